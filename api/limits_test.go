package api

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestMaxCampaigns(t *testing.T) {
	ts := newTestServer(t, "exact", func(o *testOptions) { o.MaxCampaigns = 3 })
	for _, id := range []string{"a", "b", "c"} {
		ts.createCampaign(id)
	}
	r := ts.do("POST", "/api/v1/campaigns", `{"id":"d","name":"one too many"}`).want(t, 409)
	if !strings.Contains(string(r.body), "limit") {
		t.Fatalf("limit error should say so: %s", r.body)
	}
	ts.do("POST", "/api/v1/campaigns", `{"id":"a","name":"dup"}`).want(t, 409)
	var list campaignListJSON
	ts.do("GET", "/api/v1/campaigns", "").want(t, 200).decode(t, &list)
	if len(list.Campaigns) != 3 {
		t.Fatalf("campaigns: got %d, want 3", len(list.Campaigns))
	}
	ts.do("POST", "/api/v1/impressions", track("c", "u")).want(t, 200)
}

func TestMaxCampaignsConcurrent(t *testing.T) {
	ts := newTestServer(t, "exact", func(o *testOptions) { o.MaxCampaigns = 10 })
	var wg sync.WaitGroup
	var mu sync.Mutex
	created := 0
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ts.do("POST", "/api/v1/campaigns", fmt.Sprintf(`{"id":"c%d","name":"x"}`, i)).status == 201 {
				mu.Lock()
				created++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if created != 10 {
		t.Fatalf("created %d campaigns with a limit of 10", created)
	}
}

func TestPanicIsRecovered(t *testing.T) {
	var logged strings.Builder
	ts := newTestServer(t, "exact", func(o *testOptions) { o.Options.Logger = slog.New(slog.NewTextHandler(&logged, nil)) })
	h := ts.srv.recoverPanics(func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyString("partial")
		panic("boom")
	})
	var ctx fasthttp.RequestCtx
	h(&ctx)
	if got, want := string(ctx.Response.Body()), `{"error":"internal server error","code":500}`; ctx.Response.StatusCode() != 500 || got != want {
		t.Fatalf("after a panic: %d %s, want 500 %s", ctx.Response.StatusCode(), got, want)
	}
	if !strings.Contains(logged.String(), "panic in handler") || !strings.Contains(logged.String(), "limits_test.go") {
		t.Fatalf("the panic and its stack must be logged, got %q", logged.String())
	}
	ts.do("GET", "/healthz", "").want(t, 200)
}

func TestHeaderTooLarge(t *testing.T) {
	ts := newTestServer(t, "exact", func(o *testOptions) { o.MaxHeaderBytes = 2048 })
	ts.doWith("GET", "/healthz", "", map[string]string{"X-Big": strings.Repeat("h", 4096)}).want(t, 431)
	ts.do("GET", "/healthz", "").want(t, 200)
}

// TestSlowClients opens many connections that send half a request and
// stall: a normal client must still be answered while the server holds
// them, and the stalled connections must be closed once the read timeout
// passes. How fast the answer comes is for a benchmark, not for a test on
// a loaded machine.
func TestSlowClients(t *testing.T) {
	const stalled, readTimeout = 200, 500 * time.Millisecond
	_, ln := serveCountingTCP(t, Options{ReadTimeout: readTimeout, MaxConnsPerIP: 1000})
	addr := ln.Addr().String()

	conns := make([]net.Conn, stalled)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Headers promise a body that never comes.
		if _, err := fmt.Fprintf(c, "POST /api/v1/impressions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"campaign_id\":"); err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	ln.wait(t, stalled) // the server holds them all

	// A generous bound: this checks that healthz is answered at all while
	// the stalled connections are held, not how fast.
	client := &http.Client{Timeout: 10 * time.Second}
	for range 5 {
		resp, err := client.Get("http://" + addr + "/healthz")
		if err != nil {
			t.Fatalf("healthz with %d stalled connections: %v", stalled, err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("healthz with %d stalled connections: got %d, want 200", stalled, resp.StatusCode)
		}
	}

	// Every stalled connection is answered or closed once the timeout
	// passes; the deadline only keeps a broken server from hanging the test.
	const grace = 10 * time.Second
	deadline := time.Now().Add(readTimeout + grace)
	for i, c := range conns {
		if err := c.SetReadDeadline(deadline); err != nil {
			t.Fatal(err)
		}
		_, err := io.ReadAll(bufio.NewReader(c))
		if err != nil {
			t.Fatalf("stalled connection %d not closed by the server within %s: %v", i, readTimeout+grace, err)
		}
	}
}

// TestConnectionLimits holds connections open and checks that the next
// one over a limit is refused with the JSON error, and that a closed
// connection frees its slot.
func TestConnectionLimits(t *testing.T) {
	for _, tc := range []struct {
		name       string
		max, perIP int
		status     int
	}{
		{"per IP", 100, 3, 429},
		{"overall", 3, 100, 503},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ln := serveCountingTCP(t, Options{MaxConns: tc.max, MaxConnsPerIP: tc.perIP})
			addr := ln.Addr().String()
			held := make([]net.Conn, 3)
			for i := range held {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				held[i] = c
			}
			ln.wait(t, len(held)) // the server counts them before the next
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
				t.Fatal(err)
			}
			if _, err := fmt.Fprint(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("over the limit: %v", err)
			}
			if !strings.HasPrefix(string(resp), fmt.Sprintf("HTTP/1.1 %d ", tc.status)) || !strings.Contains(string(resp), fmt.Sprintf(`"code":%d}`, tc.status)) {
				t.Fatalf("over the limit: %q, want %d with the JSON error", resp, tc.status)
			}
			held[0].Close()
			// The server sees the close asynchronously: poll, with a
			// deadline only against a server that never frees the slot.
			for deadline := time.Now().Add(10 * time.Second); ; {
				resp, err := http.Get("http://" + addr + "/healthz")
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == 200 {
						break
					}
				}
				if time.Now().After(deadline) {
					t.Fatal("a closed connection did not free its slot")
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}
