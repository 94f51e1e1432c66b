package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildBinary builds impressiond once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "impressiond")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestBinary runs the real binary end to end: bad flags exit 2 with one
// line, the server answers on the address it logs, and SIGTERM stops it
// gracefully with exit status 0.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)

	t.Run("bad flag exits 2", func(t *testing.T) {
		cmd := exec.Command(bin, "-dedup-fp", "2")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Fatalf("exit: got %v, want status 2", err)
		}
		if msg := strings.TrimSpace(stderr.String()); strings.Count(msg, "\n") != 0 || !strings.Contains(msg, "-dedup-fp") {
			t.Fatalf("stderr %q: want one line naming -dedup-fp", msg)
		}
	})

	t.Run("serves and stops on SIGTERM", func(t *testing.T) {
		cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-dedup", "exact")
		cmd.Env = append(os.Environ(), "IMPRESSIOND_MAX_SKEW=5s")
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		lines := bufio.NewScanner(stderr)
		if !lines.Scan() {
			t.Fatal("no start-up log line")
		}
		start := lines.Text()
		m := regexp.MustCompile(`addr=(127\.0\.0\.1:\d+)`).FindStringSubmatch(start)
		if m == nil || !strings.Contains(start, "max_skew=5s") || !strings.Contains(start, "dedup=exact") {
			t.Fatalf("start-up line %q: want the effective configuration", start)
		}
		base := "http://" + m[1]
		post := func(path, body string) (int, string) {
			resp, err := http.Post(base+path, "text/plain", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		if code, body := post("/api/v1/campaigns", `{"id":"c1","name":"One"}`); code != 201 {
			t.Fatalf("create: %d %s", code, body)
		}
		if code, body := post("/api/v1/impressions", `{"campaign_id":"c1","user_id":"u1"}`); code != 200 || !strings.Contains(body, `"counted"`) {
			t.Fatalf("track: %d %s", code, body)
		}

		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		rest, _ := io.ReadAll(stderr)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("exit after SIGTERM: %v, want status 0\n%s", err, rest)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("did not stop within 10s of SIGTERM")
		}
		if !strings.Contains(string(rest), "impressiond stopped") {
			t.Fatalf("log after SIGTERM: %s", rest)
		}
	})
}
