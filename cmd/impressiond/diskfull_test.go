package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tmpfs mounts a size-limited tmpfs for the test, or skips it where the
// test cannot mount one (not root, no mount namespace).
func tmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs to fill (%v: %s)", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes path until the disk is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
	}
}

// TestFullDiskEndToEnd drives the binary on a small tmpfs that fills up:
// writes are refused with 503 before anything changes once the log's
// reserved space is used, a SIGTERM on the full disk exits cleanly, and
// every restart — on the full disk, after a kill -9, after space is back —
// finds exactly the acknowledged impressions and no refused campaign.
func TestFullDiskEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	disk := tmpfs(t, "40m")
	data := filepath.Join(disk, "data")
	args := []string{"-data-dir", data, "-dedup", "exact", "-snapshot-interval", "1h"}

	a := startProc(t, bin, args...)
	if strings.Contains(a.logText(), "cannot reserve space") {
		t.Fatalf("the log does not reserve space on tmpfs:\n%s", a.logText())
	}
	a.mustCall("POST", "/api/v1/campaigns", `{"id":"c","name":"C"}`, 201)
	filler := filepath.Join(disk, "filler")
	fill(t, filler)

	acked, user := 0, 0
	for batches := 0; ; batches++ {
		if batches > 10000 {
			t.Fatal("batches never refused on a full disk")
		}
		items := make([]string, 1000)
		for i := range items {
			items[i] = impression("c", fmt.Sprint("u", user), time.Time{})
			user++
		}
		code, body, err := a.call("POST", "/api/v1/impressions/batch", "["+strings.Join(items, ",")+"]")
		if err != nil {
			t.Fatal(err)
		}
		if code == 503 {
			break
		}
		if code != 200 || !strings.Contains(body, `"counted":1000`) {
			t.Fatalf("batch on a filling disk: %d %s", code, body)
		}
		acked += 1000
	}
	for {
		code, body, err := a.call("POST", "/api/v1/impressions", impression("c", fmt.Sprint("u", user), time.Time{}))
		user++
		if err != nil {
			t.Fatal(err)
		}
		if code == 503 {
			if !strings.Contains(body, "nothing was counted") {
				t.Fatalf("503 on a full disk: %s, want it to say nothing was counted", body)
			}
			break
		}
		if code != 200 {
			t.Fatalf("impression on a filling disk: %d %s", code, body)
		}
		acked++
	}
	ghost, _, err := a.call("POST", "/api/v1/campaigns", `{"id":"ghost","name":"Ghost"}`)
	if err != nil || (ghost != 201 && ghost != 503) {
		t.Fatalf("campaign create on a full disk: %d %v, want 201 or 503", ghost, err)
	}
	wantGhost := map[int]int{201: 200, 503: 404}[ghost]
	if got := a.stats("c").Total; got != uint64(acked) {
		t.Fatalf("total on the full disk %d, want the %d acknowledged", got, acked)
	}
	if err := a.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM on a full disk: exit %v, want 0:\n%s", err, a.logText())
	}

	// The disk is still full: the server starts, serves what it has, and
	// refuses writes.
	b := startProc(t, bin, args...)
	if got := b.stats("c").Total; got != uint64(acked) {
		t.Fatalf("total after SIGTERM, on the full disk: %d, want %d:\n%s", got, acked, b.logText())
	}
	b.mustCall("GET", "/api/v1/campaigns/ghost", "", wantGhost)
	b.mustCall("POST", "/api/v1/impressions", impression("c", "refused", time.Time{}), 503)
	b.stop(syscall.SIGKILL)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	c := startProc(t, bin, args...)
	if got := c.stats("c").Total; got != uint64(acked) {
		t.Fatalf("total after kill -9 and space back: %d, want %d", got, acked)
	}
	c.mustCall("GET", "/api/v1/campaigns/ghost", "", wantGhost)
	c.mustCall("POST", "/api/v1/impressions", impression("c", "refused", time.Time{}), 200)
	c.mustCall("POST", "/api/v1/campaigns", `{"id":"ghost2","name":"Ghost"}`, 201)
	c.stop(syscall.SIGKILL)

	d := startProc(t, bin, args...)
	if got := d.stats("c").Total; got != uint64(acked)+1 {
		t.Fatalf("total after the last restart %d, want %d", got, acked+1)
	}
	d.mustCall("GET", "/api/v1/campaigns/ghost2", "", 200)
	t.Logf("%d impressions acknowledged on a 40 MiB tmpfs before the first 503", acked)
}
