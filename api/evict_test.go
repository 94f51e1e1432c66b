package api

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// keepAlive is a client connection that sends requests one at a time.
type keepAlive struct {
	c net.Conn
	r *bufio.Reader
}

func dialKeepAlive(t *testing.T, addr string) *keepAlive {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// Only against a server that never answers or closes.
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &keepAlive{c, bufio.NewReader(c)}
}

// get sends GET path and returns the status, or an error if the
// connection was closed.
func (k *keepAlive) get(path string) (int, error) {
	if _, err := fmt.Fprintf(k.c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(k.r, nil)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// idleConns counts the connections the listener holds idle.
func idleConns(srv *Server) int {
	l := srv.listener.Load()
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for c := range l.conns {
		if c.idleSince.Load() != 0 {
			n++
		}
	}
	return n
}

// TestIdleConnectionsEvicted fills MaxConns with idle keep-alive
// connections: new connections are still served, each admitted by closing
// the longest-idle one, and the other idle connections keep working.
func TestIdleConnectionsEvicted(t *testing.T) {
	const max, fresh = 20, 5
	srv, ln := serveCountingTCP(t, Options{MaxConns: max, MaxConnsPerIP: 1000})
	addr := ln.Addr().String()
	idle := make([]*keepAlive, max)
	for i := range idle {
		idle[i] = dialKeepAlive(t, addr)
		if st, err := idle[i].get("/healthz"); err != nil || st != 200 {
			t.Fatalf("idle connection %d: %d %v", i, st, err)
		}
		// Each goes idle before the next, so they are idle in this order.
		waitFor(t, fmt.Sprintf("%d idle connections", i+1), func() bool { return idleConns(srv) == i+1 })
	}
	for i := range fresh {
		k := dialKeepAlive(t, addr)
		if st, err := k.get("/healthz"); err != nil || st != 200 {
			t.Fatalf("new connection %d with %d idle ones open: %d %v, want 200", i, max, st, err)
		}
	}
	for i, k := range idle {
		st, err := k.get("/healthz")
		switch evicted := i < fresh; {
		case evicted && err == nil:
			t.Errorf("connection %d, among the %d longest idle, is still open (%d)", i, fresh, st)
		case !evicted && (err != nil || st != 200):
			t.Errorf("connection %d, not among the %d longest idle: %d %v, want 200", i, fresh, st, err)
		}
	}
	if open, evicted := srv.listener.Load().stats(); evicted != fresh || open > max {
		t.Fatalf("evicted %d connections, want %d; %d open, at most %d", evicted, fresh, open, max)
	}
}
