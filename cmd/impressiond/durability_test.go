package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is a running impressiond.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	base string
	mu   sync.Mutex
	log  strings.Builder
	done chan error
}

// startProc starts the binary and waits for its start-up line.
func startProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, cmd: exec.Command(bin, append([]string{"-addr", "127.0.0.1:0"}, args...)...), done: make(chan error, 1)}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cmd.Process.Kill(); <-p.done })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		re := regexp.MustCompile(`msg="impressiond starting".* addr=(127\.0\.0\.1:\d+)`)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
		close(addr)
		p.done <- p.cmd.Wait()
	}()
	select {
	case a, ok := <-addr:
		if !ok {
			t.Fatalf("impressiond exited before serving:\n%s", p.logText())
		}
		p.base = "http://" + a
	case <-time.After(30 * time.Second):
		t.Fatalf("no start-up line within 30s:\n%s", p.logText())
	}
	return p
}

func (p *proc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// waitLog waits up to 5s for the log to contain s.
func (p *proc) waitLog(s string) {
	p.t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(p.logText(), s); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			p.t.Fatalf("log does not say %q within 5s:\n%s", s, p.logText())
		}
	}
}

// stop sends sig and waits for the exit; it returns the exit error.
func (p *proc) stop(sig os.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("cannot send %v: %v", sig, err)
	}
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		return err
	case <-time.After(30 * time.Second):
		p.t.Fatalf("no exit within 30s of %v", sig)
		return nil
	}
}

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func (p *proc) call(method, path, body string) (int, string, error) {
	req, _ := http.NewRequest(method, p.base+path, strings.NewReader(body))
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// mustCall is call that fails the test with t.Fatalf unless the answer has
// status want: call it on the test goroutine only.
func (p *proc) mustCall(method, path, body string, want int) string {
	p.t.Helper()
	code, b, err := p.call(method, path, body)
	if err != nil || code != want {
		p.t.Fatalf("%s %s: %d %s %v, want %d", method, path, code, b, err, want)
	}
	return b
}

type statsBody struct {
	LastHour uint64 `json:"last_hour"`
	LastDay  uint64 `json:"last_day"`
	Total    uint64 `json:"total"`
}

func (p *proc) stats(id string) statsBody {
	p.t.Helper()
	var s statsBody
	body := p.mustCall("GET", "/api/v1/campaigns/"+id+"/stats", "", 200)
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		p.t.Fatalf("stats %s: %v", body, err)
	}
	return s
}

func impression(c, u string, at time.Time) string {
	if at.IsZero() {
		return fmt.Sprintf(`{"campaign_id":%q,"user_id":%q}`, c, u)
	}
	return fmt.Sprintf(`{"campaign_id":%q,"user_id":%q,"timestamp":%q}`, c, u, at.UTC().Format(time.RFC3339))
}

// TestDurability drives the real binary: graceful restarts keep every
// reading and dedup decision, kill -9 keeps campaigns and acknowledged
// impressions, damage stops the start-up with exit status 1.
func TestDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	ids := []string{"c0", "c1", "c2", "c3"}

	for _, mode := range []string{"bloom", "exact"} {
		t.Run("SIGTERM and restart/"+mode, func(t *testing.T) {
			dir := t.TempDir()
			a := startProc(t, bin, "-dedup", mode, "-data-dir", dir)
			start := time.Now().Add(-48 * time.Hour).UTC().Format(time.RFC3339) // the binary runs on the wall clock
			for _, id := range ids {
				a.mustCall("POST", "/api/v1/campaigns", `{"id":"`+id+`","name":"`+id+`","start_time":"`+start+`"}`, 201)
			}
			// Event times clear of the window edges, so that a minute
			// passing during the test moves nothing across them.
			now := time.Now()
			offsets := []time.Duration{0, 10 * time.Minute, 30 * time.Minute, 3 * time.Hour, 20 * time.Hour, 30 * time.Hour}
			var pairs []string
			for i := range 300 {
				c, u := ids[i%4], fmt.Sprintf("u%d", i%170)
				a.mustCall("POST", "/api/v1/impressions", impression(c, u, now.Add(-offsets[i%len(offsets)])), 200)
				pairs = append(pairs, c+"/"+u)
			}
			var batch []string
			for i := range 200 {
				batch = append(batch, impression("c1", fmt.Sprintf("b%d", i%120), time.Time{}))
				pairs = append(pairs, fmt.Sprintf("c1/b%d", i%120))
			}
			a.mustCall("POST", "/api/v1/impressions/batch", "["+strings.Join(batch, ",")+"]", 200)
			before := map[string]statsBody{}
			for _, id := range ids {
				before[id] = a.stats(id)
			}
			if err := a.stop(syscall.SIGTERM); err != nil {
				t.Fatalf("exit after SIGTERM: %v\n%s", err, a.logText())
			}

			b := startProc(t, bin, "-dedup", mode, "-data-dir", dir)
			b.waitLog("state restored")
			for _, id := range ids {
				if got := b.stats(id); got != before[id] {
					t.Fatalf("%s after restart: %+v, want %+v", id, got, before[id])
				}
			}
			for _, pr := range pairs {
				c, u, _ := strings.Cut(pr, "/")
				if body := b.mustCall("POST", "/api/v1/impressions", impression(c, u, time.Time{}), 200); !strings.Contains(body, "duplicate") {
					t.Fatalf("%s after restart: %s, want duplicate", pr, body)
				}
			}
		})
	}

	t.Run("kill -9 before the first snapshot keeps the secret", func(t *testing.T) {
		dir := t.TempDir()
		a := startProc(t, bin, "-dedup", "bloom", "-data-dir", dir, "-fsync-interval", "0")
		a.waitLog("new_secret=true")
		a.mustCall("POST", "/api/v1/campaigns", `{"id":"k","name":"K"}`, 201)
		for i := range 50 {
			a.mustCall("POST", "/api/v1/impressions", impression("k", fmt.Sprintf("u%d", i), time.Time{}), 200)
		}
		a.stop(syscall.SIGKILL)
		if snaps, _ := filepath.Glob(filepath.Join(dir, "snapshot-*")); len(snaps) != 0 {
			t.Fatalf("snapshots %v before the first snapshot interval", snaps)
		}
		b := startProc(t, bin, "-dedup", "bloom", "-data-dir", dir)
		b.waitLog("new_secret=false")
		if got := b.stats("k").Total; got != 50 {
			t.Fatalf("total after kill -9: %d, want 50", got)
		}
		for i := range 50 {
			if body := b.mustCall("POST", "/api/v1/impressions", impression("k", fmt.Sprintf("u%d", i), time.Time{}), 200); !strings.Contains(body, "duplicate") {
				t.Fatalf("u%d after kill -9 and restart from the log: %s, want duplicate", i, body)
			}
		}
	})

	for _, mode := range []string{"bloom", "exact"} {
		t.Run("frequency caps survive kill -9 and SIGTERM/"+mode, func(t *testing.T) {
			dir := t.TempDir()
			args := []string{"-dedup", mode, "-data-dir", dir, "-fsync-interval", "0", "-frequency-capacity", "10000"}
			a := startProc(t, bin, args...)
			a.mustCall("POST", "/api/v1/campaigns", `{"id":"f","name":"F","frequency_caps":[{"max":5,"window":"24h"}]}`, 201)
			a.mustCall("POST", "/api/v1/campaigns", `{"id":"g","name":"G"}`, 201)
			a.mustCall("PUT", "/api/v1/campaigns/g/frequency-caps", `[{"max":2,"window":"168h"}]`, 200)
			for range 3 { // one counted, two duplicates: three exposures
				a.mustCall("POST", "/api/v1/impressions", impression("f", "u", time.Time{}), 200)
			}
			a.mustCall("POST", "/api/v1/impressions", impression("g", "u", time.Time{}), 200)
			// Windows of a day and a week: a minute passing during the
			// test moves no exposure out of them.
			const check = `{"user_id":"u","campaign_ids":["f","g"]}`
			want := `{"user_id":"u","campaigns":[{"campaign_id":"f","allowed":true,"exposures":[{"window":"24h","count":3,"max":5}]},{"campaign_id":"g","allowed":true,"exposures":[{"window":"168h","count":1,"max":2}]}]}`
			if got := a.mustCall("POST", "/api/v1/frequency", check, 200); got != want {
				t.Fatalf("check: %s, want %s", got, want)
			}
			a.stop(syscall.SIGKILL)
			b := startProc(t, bin, args...)
			b.waitLog("state restored")
			if got := b.mustCall("POST", "/api/v1/frequency", check, 200); got != want {
				t.Fatalf("after kill -9: %s, want %s", got, want)
			}
			b.mustCall("POST", "/api/v1/impressions", impression("g", "u", time.Time{}), 200)
			if err := b.stop(syscall.SIGTERM); err != nil {
				t.Fatalf("exit after SIGTERM: %v\n%s", err, b.logText())
			}
			c := startProc(t, bin, args...)
			c.waitLog("state restored")
			want = strings.Replace(want, `"allowed":true,"exposures":[{"window":"168h","count":1`, `"allowed":false,"exposures":[{"window":"168h","count":2`, 1)
			if got := c.mustCall("POST", "/api/v1/frequency", check, 200); got != want {
				t.Fatalf("after SIGTERM: %s, want %s", got, want)
			}
		})
	}

	t.Run("kill -9 after a campaign 201", func(t *testing.T) {
		dir := t.TempDir()
		a := startProc(t, bin, "-data-dir", dir)
		a.mustCall("POST", "/api/v1/campaigns", `{"id":"fresh","name":"Fresh"}`, 201)
		a.stop(syscall.SIGKILL)
		b := startProc(t, bin, "-data-dir", dir)
		b.mustCall("GET", "/api/v1/campaigns/fresh", "", 200)
	})

	t.Run("kill -9 under load with fsync 0", func(t *testing.T) {
		dir := t.TempDir()
		a := startProc(t, bin, "-dedup", "exact", "-data-dir", dir, "-fsync-interval", "0")
		a.mustCall("POST", "/api/v1/campaigns", `{"id":"c","name":"C"}`, 201)
		var mu sync.Mutex
		acked := map[string]bool{} // pairs answered 200 counted
		sent := map[string]bool{}  // pairs sent, answered or not
		var wg sync.WaitGroup
		for w := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					u := fmt.Sprintf("u%d-%d", w, i/2) // each pair twice
					mu.Lock()
					sent[u] = true
					mu.Unlock()
					code, body, err := a.call("POST", "/api/v1/impressions", impression("c", u, time.Time{}))
					if err != nil {
						return // killed
					}
					if code == 200 && strings.Contains(body, `"counted"`) {
						mu.Lock()
						acked[u] = true
						mu.Unlock()
					}
				}
			}()
		}
		// Kill once some pairs are acknowledged, not after a fixed time: on
		// a loaded machine a sleep may end before any is, and the test
		// would check nothing. Polled: the server is a real process.
		const wantAcked = 200
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			mu.Lock()
			n := len(acked)
			mu.Unlock()
			if n >= wantAcked {
				break
			}
			if time.Now().After(deadline) {
				a.stop(syscall.SIGKILL)
				wg.Wait()
				t.Fatalf("%d of %d pairs acknowledged within 30s:\n%s", n, wantAcked, a.logText())
			}
		}
		a.stop(syscall.SIGKILL)
		wg.Wait()

		b := startProc(t, bin, "-dedup", "exact", "-data-dir", dir, "-fsync-interval", "0")
		total := b.stats("c").Total
		if total < uint64(len(acked)) || total > uint64(len(sent)) {
			t.Fatalf("total after kill -9: %d; want between %d acknowledged and %d sent", total, len(acked), len(sent))
		}
		for u := range sent {
			body := b.mustCall("POST", "/api/v1/impressions", impression("c", u, time.Time{}), 200)
			if acked[u] && !strings.Contains(body, "duplicate") {
				t.Fatalf("acknowledged pair %s counted again after restart", u)
			}
		}
		if got := b.stats("c").Total; got != uint64(len(sent)) {
			t.Fatalf("total after resending every pair: %d, want %d distinct pairs, each counted once", got, len(sent))
		}
		t.Logf("%d pairs acknowledged before kill -9, %d restored", len(acked), total)
	})

	t.Run("damaged snapshot refuses to start", func(t *testing.T) {
		dir := t.TempDir()
		a := startProc(t, bin, "-data-dir", dir)
		a.mustCall("POST", "/api/v1/campaigns", `{"id":"c","name":"C"}`, 201)
		if err := a.stop(syscall.SIGTERM); err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, a.logText())
		}
		snaps, _ := filepath.Glob(filepath.Join(dir, "snapshot-*.snap"))
		if len(snaps) != 1 {
			t.Fatalf("snapshots after SIGTERM: %v", snaps)
		}
		data, err := os.ReadFile(snaps[0])
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/2] ^= 1
		if err := os.WriteFile(snaps[0], data, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-data-dir", dir)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("exit %v, want status 1\n%s", err, out)
		}
		if !strings.Contains(string(out), snaps[0]) || !strings.Contains(string(out), "offset") {
			t.Fatalf("log does not name the file and offset:\n%s", out)
		}
	})

	t.Run("torn log tail is cut with a warning", func(t *testing.T) {
		dir := t.TempDir()
		// fsync 0: every answered impression is in the file before kill -9
		// (with 1s, the last few may still be in the writer's queue).
		a := startProc(t, bin, "-data-dir", dir, "-fsync-interval", "0")
		a.mustCall("POST", "/api/v1/campaigns", `{"id":"c","name":"C"}`, 201)
		for i := range 10 {
			a.mustCall("POST", "/api/v1/impressions", impression("c", fmt.Sprint(i), time.Time{}), 200)
		}
		a.stop(syscall.SIGKILL)
		segs, _ := filepath.Glob(filepath.Join(dir, "wal-*.log"))
		last := segs[len(segs)-1]
		data, err := os.ReadFile(last)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(last, data[:len(data)-5], 0o644); err != nil {
			t.Fatal(err)
		}
		b := startProc(t, bin, "-data-dir", dir)
		b.waitLog("torn write")
		if got := b.stats("c").Total; got != 9 {
			t.Fatalf("total %d, want 9 (the torn tenth dropped)\n%s", got, b.logText())
		}
	})

	t.Run("zeros after the last record are cut with a warning", func(t *testing.T) {
		dir := t.TempDir()
		a := startProc(t, bin, "-data-dir", dir, "-fsync-interval", "0")
		a.mustCall("POST", "/api/v1/campaigns", `{"id":"c","name":"C"}`, 201)
		for i := range 10 {
			a.mustCall("POST", "/api/v1/impressions", impression("c", fmt.Sprint(i), time.Time{}), 200)
		}
		a.stop(syscall.SIGKILL)
		segs, _ := filepath.Glob(filepath.Join(dir, "wal-*.log"))
		last := segs[len(segs)-1]
		data, err := os.ReadFile(last)
		if err != nil {
			t.Fatal(err)
		}
		// What a power loss leaves on some file systems: the file's size
		// was updated, its last blocks were not.
		if err := os.WriteFile(last, append(data, make([]byte, 4096)...), 0o644); err != nil {
			t.Fatal(err)
		}
		b := startProc(t, bin, "-data-dir", dir, "-fsync-interval", "0")
		b.waitLog("4096 bytes dropped")
		if !strings.Contains(b.logText(), last) || !strings.Contains(b.logText(), fmt.Sprintf("offset %d", len(data))) {
			t.Fatalf("the warning does not name the file and offset:\n%s", b.logText())
		}
		if got := b.stats("c").Total; got != 10 {
			t.Fatalf("total %d, want all 10\n%s", got, b.logText())
		}
		for i := range 5 {
			b.mustCall("POST", "/api/v1/impressions", impression("c", fmt.Sprint("b", i), time.Time{}), 200)
		}
		b.stop(syscall.SIGKILL)
		// Zeros before valid records are damage, not a torn write.
		segs, _ = filepath.Glob(filepath.Join(dir, "wal-*.log"))
		last = segs[len(segs)-1]
		data, err = os.ReadFile(last)
		if err != nil {
			t.Fatal(err)
		}
		clear(data[8:30]) // the first record, after the segment's header
		if err := os.WriteFile(last, data, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "-addr", "127.0.0.1:0", "-data-dir", dir).CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "a valid record follows") {
			t.Fatalf("damage before valid records: %v\n%s", err, out)
		}
	})
}
