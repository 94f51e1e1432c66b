package api

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// syncBuffer is a strings.Builder safe for the writer goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestAccessLog(t *testing.T) {
	var out syncBuffer
	ts := newTestServer(t, "exact", func(o *testOptions) {
		o.AccessLog = true
		o.Options.Logger = slog.New(slog.NewTextHandler(&out, nil))
	})
	ts.createCampaign("c1")
	ts.do("POST", "/api/v1/impressions", track("c1", "u1")).want(t, 200)
	ts.do("GET", "/nope", "").want(t, 404)
	if err := ts.srv.Close(); err != nil { // writes what is queued
		t.Fatal(err)
	}
	log := out.String()
	for _, want := range []string{
		`msg=access method=POST path=/api/v1/campaigns status=201`,
		`msg=access method=POST path=/api/v1/impressions status=200`,
		`msg=access method=GET path=/nope status=404`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("access log lacks %q:\n%s", want, log)
		}
	}
}

func TestNoAccessLogByDefault(t *testing.T) {
	var out syncBuffer
	ts := newTestServer(t, "exact", func(o *testOptions) { o.Options.Logger = slog.New(slog.NewTextHandler(&out, nil)) })
	ts.do("GET", "/healthz", "").want(t, 200)
	if err := ts.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "msg=access") {
		t.Fatalf("access log written while off: %s", out.String())
	}
}

// blockingWriter blocks every write until released.
type blockingWriter struct{ release chan struct{} }

func (w blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	return len(p), nil
}

// TestAccessLogNeverBlocks stalls the log writer: requests must still be
// served, the excess entries dropped and counted.
func TestAccessLogNeverBlocks(t *testing.T) {
	w := blockingWriter{release: make(chan struct{})}
	a := newAccessLog(slog.New(slog.NewTextHandler(w, nil)))
	h := a.wrap(func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(200) })
	const requests = 10000
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ctx fasthttp.RequestCtx
		for i := 0; i < requests; i++ {
			h(&ctx)
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("requests blocked on a stalled access log")
	}
	if got, want := a.dropped.Load(), uint64(requests-cap(a.ch)-1); got < want {
		t.Fatalf("dropped %d entries, want at least %d", got, want)
	}
	close(w.release)
	a.stop()
}
