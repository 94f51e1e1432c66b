package api

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
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
	ts := newTestServer(t, "exact", func(o *Options) {
		o.AccessLog = true
		o.Logger = slog.New(slog.NewTextHandler(&out, nil))
	})
	ts.createCampaign("c1")
	ts.do("POST", "/api/v1/impressions", track("c1", "u1")).want(t, 200)
	ts.do("GET", "/nope", "").want(t, 404)
	ts.srv.Close() // writes what is queued
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
	ts := newTestServer(t, "exact", func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&out, nil)) })
	ts.do("GET", "/healthz", "").want(t, 200)
	ts.srv.Close()
	if strings.Contains(out.String(), "msg=access") {
		t.Fatalf("access log written while off: %s", out.String())
	}
}
