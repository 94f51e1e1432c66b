package redistest

import (
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"
)

func TestStart(t *testing.T) {
	s := Start(t)
	if err := ping(s.Addr); err != nil {
		t.Fatalf("PING after Start: %v", err)
	}
	if want := "redis://" + s.Addr + "/0"; s.URL != want {
		t.Fatalf("URL: got %q, want %q", s.URL, want)
	}
	if host, _, _ := net.SplitHostPort(s.Addr); host != "127.0.0.1" {
		t.Fatalf("Addr: got %q, want a 127.0.0.1 address", s.Addr)
	}
}

func TestStopRestart(t *testing.T) {
	s := Start(t)
	addr := s.Addr
	mustDo(t, s.Addr, "OK", "SET", "k", "v")

	p := s.proc
	s.Stop()
	// The process has exited. Not checked by dialing addr: once freed, the
	// port may be given to a test of another package running meanwhile.
	if !exited(p) {
		t.Fatalf("redis-server on %s still running after Stop", addr)
	}
	s.Stop() // stopping a stopped server does nothing

	s.Restart()
	if s.Addr != addr {
		t.Fatalf("Addr after Restart: got %q, want %q", s.Addr, addr)
	}
	if err := ping(s.Addr); err != nil {
		t.Fatalf("PING after Restart: %v", err)
	}
	mustDo(t, s.Addr, "0", "EXISTS", "k") // no persistence: data is gone

	s.Restart() // restarting a running server stops it first
	if err := ping(s.Addr); err != nil {
		t.Fatalf("PING after second Restart: %v", err)
	}
}

// TestRestartPortBusy holds the port with a listener that answers +PONG to
// everyone: Restart must retry until the port is free and must not take the
// impostor for its own server.
func TestRestartPortBusy(t *testing.T) {
	s := Start(t)
	s.Stop()
	l, err := net.Listen("tcp", s.Addr)
	if err != nil {
		t.Fatalf("cannot hold %s: %v", s.Addr, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return // l was closed
			}
			_, _ = c.Write([]byte("+PONG\r\n"))
			c.Close()
		}
	}()
	const hold = 300 * time.Millisecond
	release := time.AfterFunc(hold, func() { l.Close() })
	defer release.Stop()

	began := time.Now()
	s.Restart()
	<-done
	if elapsed := time.Since(began); elapsed < hold {
		t.Fatalf("Restart returned after %s, before the port was freed at %s", elapsed, hold)
	}
	if err := ping(s.Addr); err != nil {
		t.Fatalf("PING after Restart on a freed port: %v", err)
	}
}

func TestFlushAll(t *testing.T) {
	s := Start(t)
	mustDo(t, s.Addr, "OK", "SET", "k", "v")
	mustDo(t, s.Addr, "1", "DBSIZE")
	s.FlushAll(t)
	mustDo(t, s.Addr, "0", "DBSIZE")
}

func TestCleanupStops(t *testing.T) {
	var s *Server
	var p *process
	t.Run("server", func(t *testing.T) {
		s = Start(t)
		p = s.proc
	})
	// As in TestStopRestart, the process is checked, not the freed port.
	if !exited(p) || s.proc != nil {
		t.Fatalf("redis-server on %s still running after the test ended", s.Addr)
	}
}

// exited reports whether p's redis-server has exited and been waited for.
func exited(p *process) bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func TestStartWithoutRedis(t *testing.T) {
	for _, tc := range []struct {
		ci                      string
		wantSkipped, wantFailed bool
	}{
		// A developer without redis-server skips the Redis tests.
		{ci: "", wantSkipped: true},
		// CI must run them: a missing redis-server fails the test.
		{ci: "true", wantFailed: true},
	} {
		t.Run("CI="+tc.ci, func(t *testing.T) {
			t.Setenv("PATH", t.TempDir())
			t.Setenv("CI", tc.ci)
			r := &recorder{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				Start(r)
				t.Errorf("Start returned without redis-server in PATH")
			}()
			<-done
			if r.skipped != tc.wantSkipped || r.failed != tc.wantFailed {
				t.Fatalf("got skipped=%v failed=%v (%q), want skipped=%v failed=%v",
					r.skipped, r.failed, r.msg, tc.wantSkipped, tc.wantFailed)
			}
		})
	}
}

// recorder is a testing.TB whose Skipf and Fatalf record the outcome and end
// the goroutine, as the real ones do, without ending the test.
type recorder struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recorder) Skipf(format string, args ...any) {
	r.skipped, r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func mustDo(t *testing.T, addr, want string, args ...string) {
	t.Helper()
	got, err := do(addr, args...)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	if got != want {
		t.Fatalf("%v: got %q, want %q", args, got, want)
	}
}
