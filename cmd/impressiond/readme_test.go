package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadmeDedupSwitch runs the README's examples in their order on one
// data directory: a plain start (Bloom), then exact mode, which is refused
// with a message naming -dedup-reset, then exact mode with -dedup-reset,
// which keeps the campaign and its count, then exact mode again, which
// needs no reset. The README must still show the commands it runs.
func TestReadmeDedupSwitch(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{
		`make run ARGS="-dedup exact" DATA=./data-exact`,
		`make run ARGS="-dedup exact -dedup-reset"`,
		`-data-dir $(DATA) $(ARGS)`,
	} {
		if !strings.Contains(string(readme)+mustRead(t, "../../Makefile"), cmd) {
			t.Fatalf("README or Makefile no longer shows %s", cmd)
		}
	}
	bin := buildBinary(t)
	dir := t.TempDir()

	p := startProc(t, bin, "-data-dir", dir) // make run
	p.mustCall("POST", "/api/v1/campaigns", `{"id":"c","name":"C"}`, 201)
	p.mustCall("POST", "/api/v1/impressions", impression("c", "u", time.Time{}), 200)
	if err := p.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("exit: %v", err)
	}

	// make run ARGS="-dedup exact": refused, with the way out named.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-addr", "127.0.0.1:0", "-data-dir", dir, "-dedup", "exact").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "-dedup-reset") {
		t.Fatalf("exact on a Bloom directory: %v, want a failure naming -dedup-reset:\n%s", err, out)
	}

	// make run ARGS="-dedup exact -dedup-reset": counts kept, a warning.
	p = startProc(t, bin, "-data-dir", dir, "-dedup", "exact", "-dedup-reset")
	if got := p.stats("c").Total; got != 1 {
		t.Fatalf("total after the switch %d, want 1", got)
	}
	// The child's stderr is copied by a goroutine: the warning may reach
	// the buffer after the stats answer.
	p.waitLog("the dedup window was started empty")
	p.mustCall("POST", "/api/v1/impressions", impression("c", "u2", time.Time{}), 200)
	if err := p.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("exit: %v", err)
	}

	// The directory is exact now: no reset needed, nothing lost.
	p = startProc(t, bin, "-data-dir", dir, "-dedup", "exact")
	if got := p.stats("c").Total; got != 2 {
		t.Fatalf("total after restart %d, want 2", got)
	}
	if body := p.mustCall("POST", "/api/v1/impressions", impression("c", "u2", time.Time{}), 200); !strings.Contains(body, "duplicate") {
		t.Fatalf("repeat after restart: %s, want duplicate", body)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
