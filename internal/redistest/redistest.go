// Package redistest runs a real redis-server for tests that need one.
//
// Start launches redis-server on a free loopback port with a fresh temporary
// directory and no persistence, waits until it answers PING, and kills it when
// the test ends. Stop and Restart take it down and bring it back on the same
// address, so tests can check that clients ride through an outage; data does
// not survive a restart.
//
// When redis-server is not in PATH the test is skipped, except with CI=true in
// the environment, where it fails: in CI the Redis tests must run, never skip.
//
// Only the standard library is used: the few commands the package sends
// itself (PING, INFO, FLUSHALL) are written as raw RESP over TCP.
package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	// readyTimeout bounds how long one launch may take to answer PING.
	readyTimeout = 10 * time.Second
	// restartTimeout bounds how long Restart retries while the port is busy.
	restartTimeout = 5 * time.Second
	// startAttempts is how many free ports Start tries before failing.
	startAttempts = 3
	// pollInterval is the pause between readiness probes and launch retries.
	pollInterval = 20 * time.Millisecond
)

// errExited reports that redis-server exited before it answered PING, as it
// does when its port is taken.
var errExited = errors.New("redistest: redis-server exited before answering PING")

// Server is a redis-server process started for a test.
// It is not safe for concurrent use: call its methods from the test goroutine.
type Server struct {
	// Addr is the server's loopback host:port, such as "127.0.0.1:40123".
	Addr string
	// URL is Addr as a URL for database 0: "redis://127.0.0.1:40123/0".
	URL string

	t    testing.TB
	bin  string   // path of redis-server
	dir  string   // working directory, removed by t.TempDir's cleanup
	port int      // fixed for the Server's lifetime once Start returns
	args []string // extra redis-server arguments
	proc *process // the running process, nil while stopped
}

// process is one run of redis-server.
type process struct {
	cmd  *exec.Cmd
	out  bytes.Buffer  // stdout and stderr; read only after done is closed
	done chan struct{} // closed once cmd.Wait has returned
}

// Cluster is a Redis Cluster of masters started for a test.
type Cluster struct {
	// URL lists every master as a seed: "redis://127.0.0.1:P1,127.0.0.1:P2,...".
	URL   string
	Nodes []*Server
}

// StartCluster runs n redis-servers in cluster mode and joins them into one
// cluster of n masters covering every slot (redis-cli --cluster create),
// skipping or failing as Start does when the tools are missing.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-cli is not in PATH; CI must run the Redis tests: %v", err)
		}
		t.Skipf("redis-cli is not in PATH; skipping the Redis Cluster test: %v", err)
	}
	c := &Cluster{}
	var addrs []string
	for range n {
		s := startWith(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
		c.Nodes = append(c.Nodes, s)
		addrs = append(addrs, s.Addr)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, s := range c.Nodes {
		for {
			info, err := do(s.Addr, "CLUSTER", "INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster not ok on %s within 10s: %q %v", s.Addr, info, err)
			}
			time.Sleep(pollInterval)
		}
	}
	c.URL = "redis://" + strings.Join(addrs, ",")
	return c
}

// Start runs redis-server on a free loopback port with a fresh temp dir
// (no persistence: --save "" --appendonly no), waits until it answers PING,
// and stops it in t.Cleanup. If redis-server is not in PATH it calls t.Skip,
// unless the environment has CI=true, where it calls t.Fatal: in CI the
// Redis tests must run, never skip.
func Start(t testing.TB) *Server {
	t.Helper()
	return startWith(t)
}

// startWith is Start with extra redis-server arguments.
func startWith(t testing.TB, args ...string) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server is not in PATH; CI must run the Redis tests: %v", err)
		}
		t.Skipf("redis-server is not in PATH; skipping the Redis test: %v", err)
	}
	// TempDir before Cleanup: cleanups run last-in first-out, so the server
	// is killed before its directory is removed.
	s := &Server{t: t, bin: bin, dir: t.TempDir(), args: args}
	t.Cleanup(s.Stop)
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("cannot pick a port for redis-server: %v", err)
		}
		s.setPort(port)
		err = s.launch()
		if err == nil {
			return s
		}
		// Another process may have taken the port between our check and
		// redis-server's bind; a fresh port fixes that, nothing else.
		if !errors.Is(err, errExited) || attempt == startAttempts {
			t.Fatalf("cannot start redis-server on %s: %v", s.Addr, err)
		}
	}
}

// Stop kills the server (SIGKILL) and waits for it to exit; connections to
// Addr then fail until Restart. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	if s.proc == nil {
		return
	}
	s.proc.kill()
	s.proc = nil
}

// Restart starts the server again on the same port, stopping it first if it
// is running, and waits until it answers PING. It retries for up to 5s while
// the port is still busy. The restarted server starts empty.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	deadline := time.Now().Add(restartTimeout)
	for {
		err := s.launch()
		if err == nil {
			return
		}
		if !errors.Is(err, errExited) || time.Now().After(deadline) {
			s.t.Fatalf("cannot restart redis-server on %s: %v", s.Addr, err)
		}
		time.Sleep(pollInterval)
	}
}

// RestartKeepingData stops the server gracefully with SHUTDOWN SAVE, which
// writes its data to the working directory, and starts it again on the
// same port, loading that data: a restart of a Redis that persists its data
// (RDB or AOF), as production runs it.
func (s *Server) RestartKeepingData() {
	s.t.Helper()
	if s.proc != nil {
		do(s.Addr, "SHUTDOWN", "SAVE") // the connection drops as it exits
		select {
		case <-s.proc.done:
		case <-time.After(restartTimeout):
			s.t.Fatalf("redis-server on %s did not exit within %s of SHUTDOWN SAVE", s.Addr, restartTimeout)
		}
		s.proc = nil
	}
	s.Restart()
}

// Pause freezes the server (SIGSTOP): connections stay open and commands
// hang, as with a Redis stuck in a long command or a network partition.
// Resume lets it go on.
func (s *Server) Pause() {
	s.t.Helper()
	if err := s.proc.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		s.t.Fatalf("cannot pause redis-server: %v", err)
	}
}

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() {
	s.t.Helper()
	if err := s.proc.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		s.t.Fatalf("cannot resume redis-server: %v", err)
	}
}

// FlushAll removes every key from every database of the server.
func (s *Server) FlushAll(t testing.TB) {
	t.Helper()
	reply, err := do(s.Addr, "FLUSHALL")
	if err != nil {
		t.Fatalf("FLUSHALL on %s: %v", s.Addr, err)
	}
	if reply != "OK" {
		t.Fatalf("FLUSHALL on %s: got reply %q, want \"OK\"", s.Addr, reply)
	}
}

func (s *Server) setPort(port int) {
	s.port = port
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.URL = "redis://" + s.Addr + "/0"
}

// launch runs redis-server once and waits until it answers PING. The error
// wraps errExited if the process exited first, and carries its output.
func (s *Server) launch() error {
	p := &process{done: make(chan struct{})}
	p.cmd = exec.Command(s.bin,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--protected-mode", "no",
	)
	p.cmd.Args = append(p.cmd.Args, s.args...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("cannot run %s: %w", s.bin, err)
	}
	go func() {
		_ = p.cmd.Wait() // the exit status is reported from ProcessState
		close(p.done)
	}()
	if err := p.waitReady(s.Addr); err != nil {
		p.kill()
		return fmt.Errorf("%w\nredis-server output:\n%s", err, p.out.String())
	}
	s.proc = p
	return nil
}

// waitReady polls addr until this process answers PING, the process exits,
// or readyTimeout passes. The process is checked by pid, so another server
// that holds the port is never taken for ours.
func (p *process) waitReady(addr string) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("%w (%s)", errExited, p.cmd.ProcessState)
		default:
		}
		err := p.probe(addr)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer on %s within %s: %w", addr, readyTimeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// probe returns nil if addr answers PING and is served by this process.
func (p *process) probe(addr string) error {
	if err := ping(addr); err != nil {
		return err
	}
	info, err := do(addr, "INFO", "server")
	if err != nil {
		return err
	}
	want := "process_id:" + strconv.Itoa(p.cmd.Process.Pid) + "\r\n"
	if !strings.Contains(info, want) {
		return fmt.Errorf("%s is served by another process", addr)
	}
	return nil
}

// kill sends SIGKILL and waits for the process to exit.
func (p *process) kill() {
	_ = p.cmd.Process.Kill() // fails only if it already exited; done tells
	<-p.done
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}

// ping sends PING to addr and checks for +PONG.
func ping(addr string) error {
	reply, err := do(addr, "PING")
	if err != nil {
		return err
	}
	if reply != "PONG" {
		return fmt.Errorf("PING: got reply %q, want \"PONG\"", reply)
	}
	return nil
}

// do sends one command to addr on a new connection and returns its reply:
// the text of a simple string or integer, or the contents of a bulk string.
// An error reply is returned as an error.
func do(addr string, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return "", err
	}
	var req strings.Builder
	fmt.Fprintf(&req, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&req, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(conn, req.String()); err != nil {
		return "", err
	}
	return readReply(bufio.NewReader(conn))
}

// readReply reads one RESP2 reply that is not an array.
func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply line")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("error reply: %s", line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("unexpected bulk reply %q", line)
		}
		buf := make([]byte, n+2) // the contents and their trailing CRLF
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

// ClockShiftEnv names the variable that moves the clocks of the Redis
// tests: a Go duration such as 8760h or -8760h. make test runs the Redis
// tests at today's date and again a year ahead and a year back, so a test
// that mixes a fixed date with the wall clock, or with Redis's, fails at
// once rather than months later.
const ClockShiftEnv = "IMPRESSIOND_TEST_CLOCK_SHIFT"

// ClockShift returns the shift of ClockShiftEnv, 0 when it is unset. A
// malformed value fails the test. It is read through os.Getenv during the
// test, so go test's cache keys on it.
func ClockShift(t testing.TB) time.Duration {
	t.Helper()
	v := os.Getenv(ClockShiftEnv)
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", ClockShiftEnv, v, err)
	}
	return d
}
