package api

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// waitFor polls cond until it holds; the deadline only keeps a broken
// server from hanging the test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestBodyMemoryBound has many connections claim a 1 MiB body and send a
// part of it, then stall: the memory their bodies reserve never exceeds
// MaxBodyMemory, the ones that do not fit get a 503 JSON error and their
// connection closed, and /healthz and a small impression still get
// answered. Closing the stalled connections returns all their memory.
func TestBodyMemoryBound(t *testing.T) {
	const (
		budget = 1 << 20
		conns  = 40
		sent   = 60 << 10 // each stalled body holds a 64 KiB buffer
	)
	srv, ln := serveCountingTCP(t, Options{MaxBodySize: budget, MaxBodyMemory: budget, MaxConnsPerIP: 1000, ReadTimeout: time.Minute})
	addr := ln.Addr().String()
	post(t, addr, "/api/v1/campaigns", `{"id":"c1","name":"c1"}`, 201)

	type answer struct {
		resp string
		err  error
	}
	answers := make(chan answer, conns)
	held := make([]net.Conn, conns)
	for i := range held {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held[i] = c
		go func() {
			_, err := fmt.Fprintf(c, "POST /api/v1/impressions/batch HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", budget, strings.Repeat(" ", sent))
			if err != nil {
				answers <- answer{err: err}
				return
			}
			b, err := io.ReadAll(c) // until the server closes, or the test does
			answers <- answer{string(b), err}
		}()
	}
	// Settled: every stalled body holds exactly its 64 KiB buffer and every
	// other connection was answered.
	var got []answer
	waitFor(t, "every connection held or answered", func() bool {
		for len(answers) > 0 {
			got = append(got, <-answers)
		}
		used := srv.bodyMem.used.Load()
		return used%(64<<10) == 0 && int(used/(64<<10))+len(got) == conns
	})
	if peak := srv.bodyMem.peak.Load(); peak > budget {
		t.Fatalf("body memory peaked at %d bytes, over the %d budget", peak, budget)
	}
	if len(got) == 0 {
		t.Fatalf("%d bodies of %d bytes each fit in a budget of %d", conns, sent, budget)
	}
	for _, a := range got {
		if a.err != nil {
			t.Fatalf("a refused connection: %v", a.err)
		}
		// io.ReadAll returned: the server closed the connection.
		if !strings.HasPrefix(a.resp, "HTTP/1.1 503 ") || !strings.Contains(a.resp, "\r\nConnection: close\r\n") ||
			!strings.HasSuffix(a.resp, `,"code":503}`) {
			t.Fatalf("over the budget: %q, want a 503 JSON error with Connection: close", a.resp)
		}
	}
	if n := srv.bodyMem.refused.Load(); n != uint64(len(got)) {
		t.Fatalf("refusals counted: got %d, want %d", n, len(got))
	}
	get(t, addr, "/healthz", 200)
	post(t, addr, "/api/v1/impressions", track("c1", "u1"), 200)

	for _, c := range held {
		c.Close()
	}
	waitFor(t, "the stalled bodies' memory returned", func() bool { return srv.bodyMem.used.Load() == 0 })
}

// TestBodyClaimHoldsNothing is the attack of a client claiming a 4 MiB body
// and sending 100 bytes on many connections: what fasthttp reads ahead is
// all they cost, nothing is reserved for the bodies they claim, and other
// clients are served.
func TestBodyClaimHoldsNothing(t *testing.T) {
	const conns = 200
	srv, ln := serveCountingTCP(t, Options{MaxBodySize: 4 << 20, MaxConnsPerIP: 1000, ReadTimeout: time.Minute})
	addr := ln.Addr().String()
	for range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := fmt.Fprintf(c, "POST /api/v1/impressions/batch HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", 4<<20, strings.Repeat(" ", 100)); err != nil {
			t.Fatal(err)
		}
	}
	ln.wait(t, conns)
	get(t, addr, "/healthz", 200)
	if used := srv.bodyMem.used.Load(); used != 0 {
		t.Fatalf("%d connections that claimed 4 MiB and sent 100 bytes reserved %d bytes", conns, used)
	}
}

// TestChunkedBodyLimit checks that a chunked body is held to MaxBodySize
// as one with a Content-Length is: 413, and the connection drained and
// closed.
func TestChunkedBodyLimit(t *testing.T) {
	_, addr := serveTCP(t, Options{MaxBodySize: 1024})
	for _, tc := range []struct {
		name   string
		size   int
		status int
	}{
		{"within the limit", 1000, 400}, // spaces only: malformed JSON
		{"over the limit", 1025, 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(c, "POST /api/v1/impressions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", tc.size, strings.Repeat(" ", tc.size))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.HasSuffix(string(b), fmt.Sprintf(`"code":%d}`, tc.status)) {
				t.Fatalf("got %d %s, want %d with the JSON error", resp.StatusCode, b, tc.status)
			}
		})
	}
}

func get(t *testing.T, addr, path string, status int) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != status {
		t.Fatalf("GET %s: got %d, want %d", path, resp.StatusCode, status)
	}
}

func post(t *testing.T, addr, path, body string, status int) {
	t.Helper()
	resp, err := http.Post("http://"+addr+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != status {
		t.Fatalf("POST %s: got %d %s, want %d", path, resp.StatusCode, b, status)
	}
}

// TestStalledBodyTimesOut: a client that sends part of a large body and
// stalls is cut off by ReadTimeout (408, then closed) and the memory its
// body reserved comes back.
func TestStalledBodyTimesOut(t *testing.T) {
	srv, addr := serveTCP(t, Options{MaxBodySize: 1 << 20, ReadTimeout: 300 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second)) // only against a server that never cuts it off
	if _, err := fmt.Fprintf(c, "POST /api/v1/impressions/batch HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", 1<<20, strings.Repeat(" ", 20<<10)); err != nil {
		t.Fatal(err)
	}
	resp, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("a stalled body was not cut off: %v", err)
	}
	if !strings.HasPrefix(string(resp), "HTTP/1.1 408 ") || !strings.HasSuffix(string(resp), `"code":408}`) {
		t.Fatalf("a stalled body: %q, want a 408 JSON error", resp)
	}
	waitFor(t, "the stalled body's memory returned", func() bool { return srv.bodyMem.used.Load() == 0 })
}
