package api

import (
	"bufio"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/impressiond/impressiond/sketch"
)

// TestIdleWindowAdvances: without any traffic, the server's maintenance
// tick advances the dedup window, so an exact window frees the pairs that
// left it. The tick runs on real time once a second; the bound is generous.
func TestIdleWindowAdvances(t *testing.T) {
	memoryOnly(t, "the in-process dedup window's maintenance tick")
	x, err := sketch.NewExact(sketch.Options{TTL: time.Hour, Slices: 6})
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, "exact", func(o *testOptions) { o.Dedup = x })
	ts.createCampaign("c")
	ts.do("POST", "/api/v1/impressions", track("c", "u")).want(t, 200)
	if got := x.Len(); got != 1 {
		t.Fatalf("Len after one impression: got %d, want 1", got)
	}
	ts.clock.Add(time.Hour + 10*time.Minute + time.Second) // past ttl + ttl/6
	deadline := time.Now().Add(10 * time.Second)
	for x.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("Len 10s after the window moved past the pair, with no traffic: got %d, want 0", x.Len())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReadyzDuringDrain: once Shutdown starts, /readyz answers 503 while
// in-flight requests are still being drained.
func TestReadyzDuringDrain(t *testing.T) {
	ts := newTestServer(t, "exact")
	ts.createCampaign("c")
	ts.do("GET", "/readyz", "").want(t, 200)

	// A slow client: a request whose body has not all arrived keeps its
	// connection busy, so Shutdown must wait for it. The server's
	// "100 Continue" says it has read the head: the connection is no
	// longer idle, so Shutdown cannot just close it.
	conn, err := ts.dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := track("c", "slow")
	head := "POST /api/v1/impressions HTTP/1.1\r\nHost: impressiond\r\nContent-Type: application/json\r\n" +
		"Expect: 100-continue\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	if _, err := conn.Write([]byte(head)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	if err != nil || !strings.Contains(line, "100") {
		t.Fatalf("answer to Expect: 100-continue: got %q (%v), want 100 Continue", line, err)
	}
	if line, err := br.ReadString('\n'); err != nil || line != "\r\n" {
		t.Fatalf("end of the 100 Continue head: got %q (%v), want an empty line", line, err)
	}

	shutdown := make(chan error, 1)
	go func() { shutdown <- ts.srv.Shutdown(context.Background()) }()

	deadline := time.Now().Add(5 * time.Second)
	for {
		status := readyz(ts.srv)
		select {
		case err := <-shutdown:
			t.Fatalf("Shutdown returned (%v) while a request was in flight", err)
		default:
		}
		if status == fasthttp.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz 5s into the drain: got %d, want 503", status)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := conn.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := <-shutdown; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	// The drained request was answered, not dropped.
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	for {
		if err := resp.Read(br); err != nil {
			t.Fatalf("reading the drained request's answer: %v", err)
		}
		if resp.StatusCode() != fasthttp.StatusContinue {
			break
		}
	}
	if got := resp.StatusCode(); got != 200 {
		t.Fatalf("drained request: got %d, want 200 (body %s)", got, resp.Body())
	}
}

// readyz asks the server's handler for /readyz directly: the listener is
// closed once the drain starts.
func readyz(s *Server) int {
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("GET")
	ctx.Request.SetRequestURI("/readyz")
	s.Handler()(&ctx)
	return ctx.Response.StatusCode()
}
