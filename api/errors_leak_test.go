package api

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/impressiond/impressiond/sketch"
	"github.com/impressiond/impressiond/store/redisstore"

	"github.com/impressiond/impressiond/internal/redistest"
)

// TestRedisErrorsStayInTheLog: with Redis down, clients get the documented
// generic 503, naming neither Redis's address nor the dial error; the log
// gets the detail, once however many requests fail while the clock stands.
func TestRedisErrorsStayInTheLog(t *testing.T) {
	srv := redistest.Start(t)
	st, err := redisstore.Open(redisstore.Options{URL: srv.URL, Mode: "exact", Timeout: 200 * time.Millisecond,
		Dedup: sketch.Options{TTL: time.Hour, Slices: 6, Capacity: 100000, FalsePositiveRate: 0.001}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	var logged syncBuffer
	s := newTestServer(t, "exact", func(o *testOptions) {
		o.Dedup, o.Redis = nil, st
		o.Options.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	})
	s.createCampaign("c")
	srv.Stop()

	want := `{"error":"shared store unavailable, retry later (a retried impression is never counted twice)","code":503}`
	addr := strings.TrimPrefix(srv.URL, "redis://")
	for _, r := range []response{
		s.do("POST", "/api/v1/impressions", track("c", "u1")).want(t, 503),
		s.do("POST", "/api/v1/impressions/batch", "["+track("c", "u2")+"]").want(t, 503),
		s.do("POST", "/api/v1/campaigns", `{"id":"d","name":"D"}`).want(t, 503),
		s.do("GET", "/api/v1/campaigns/c/stats", "").want(t, 503),
		s.do("GET", "/api/v1/campaigns", "").want(t, 503),
	} {
		if got := string(r.body); got != want {
			t.Fatalf("503 body %s, want %s", got, want)
		}
		if strings.Contains(string(r.body), addr) || strings.Contains(string(r.body), "dial") {
			t.Fatalf("503 body %s leaks the cause", r.body)
		}
	}
	if got := strings.Count(logged.String(), "shared store (Redis) request failed"); got != 1 {
		t.Fatalf("%d log lines for 5 failures at one instant, want 1:\n%s", got, logged.String())
	}

	s.clock.Add(time.Second) // the tracker logs a failing Redis at most once a second
	s.do("POST", "/api/v1/impressions", track("c", "u3")).want(t, 503)
	log := logged.String()
	if got := strings.Count(log, "shared store (Redis) request failed"); got != 2 {
		t.Fatalf("%d log lines after a second, want 2:\n%s", got, log)
	}
	if !strings.Contains(log, "failures=") {
		t.Fatalf("log %s does not say how many failures a line stands for", log)
	}
}
