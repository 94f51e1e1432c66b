package api

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/impressiond/impressiond/internal/redistest"
	"github.com/impressiond/impressiond/sketch"
	"github.com/impressiond/impressiond/store/redisstore"
)

// redisServers serves n Servers sharing one redis-server, as n impressiond
// instances behind a load balancer, each giving Redis timeout per call.
func redisServers(t *testing.T, mode string, n int, timeout time.Duration) ([]*testServer, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	var out []*testServer
	for range n {
		st, err := redisstore.Open(redisstore.Options{URL: srv.URL, Mode: mode, Timeout: timeout,
			Dedup: sketch.Options{TTL: time.Hour, Slices: 6, Capacity: 100000, FalsePositiveRate: 0.001}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		out = append(out, newTestServer(t, mode, func(o *testOptions) { o.Dedup, o.Redis = nil, st }))
	}
	return out, srv
}

// TestRedisSharedCounts: two servers on one Redis, concurrent load on the
// same pairs through both: each pair is counted once, and both report the
// same exact totals and campaigns.
func TestRedisSharedCounts(t *testing.T) {
	for _, mode := range []string{"exact", "bloom"} {
		t.Run(mode, func(t *testing.T) {
			ts, _ := redisServers(t, mode, 2, 5*time.Second)
			ts[0].createCampaign("shared")
			ts[1].do("POST", "/api/v1/campaigns", `{"id":"shared","name":"again"}`).want(t, 409)
			const pairs = 300
			var counted atomic.Int64
			var wg sync.WaitGroup
			for w := range 6 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range pairs {
						r := ts[w%2].do("POST", "/api/v1/impressions", track("shared", fmt.Sprintf("u%d", i)))
						if !r.ok(t, 200) {
							return
						}
						if strings.Contains(string(r.body), `"counted"`) {
							counted.Add(1)
						}
					}
				}()
			}
			// Batches through both, on the same pairs again.
			for _, s := range ts {
				var items []string
				for i := range pairs {
					items = append(items, track("shared", fmt.Sprintf("u%d", i)))
				}
				// ok, not want: the workers must be waited for before
				// the test may end.
				r := s.do("POST", "/api/v1/impressions/batch", "["+strings.Join(items, ",")+"]")
				var res struct{ Counted int }
				if r.ok(t, 200) {
					if err := json.Unmarshal(r.body, &res); err != nil {
						t.Errorf("decode %s: %v", r.body, err)
					}
				}
				counted.Add(int64(res.Counted))
			}
			wg.Wait()
			if t.Failed() {
				t.FailNow()
			}
			if counted.Load() != pairs {
				t.Fatalf("%d impressions answered counted, want %d", counted.Load(), pairs)
			}
			for _, s := range ts {
				if st := s.stats("shared"); st.Total != pairs || st.LastHour != pairs || st.LastDay != pairs {
					t.Fatalf("stats %+v, want %d in every window", st, pairs)
				}
			}
			a := ts[0].do("GET", "/api/v1/campaigns", "").want(t, 200).body
			b := ts[1].do("GET", "/api/v1/campaigns", "").want(t, 200).body
			if string(a) != string(b) {
				t.Fatalf("the servers list different campaigns:\n%s\n%s", a, b)
			}
		})
	}
}

// TestRedisUnavailable: with Redis down, requests that need it fail fast
// with 503 JSON errors and /readyz says so; once Redis is back (empty, as
// after a crash without persistence) everything recovers by itself.
func TestRedisUnavailable(t *testing.T) {
	ts, srv := redisServers(t, "exact", 1, 200*time.Millisecond) // the default: failing fast is the point
	s := ts[0]
	s.createCampaign("c")
	s.do("POST", "/api/v1/impressions", track("c", "before")).want(t, 200)
	s.do("GET", "/readyz", "").want(t, 200)

	srv.Stop()
	start := time.Now()
	s.do("POST", "/api/v1/impressions", track("c", "during")).want(t, 503)
	// Generous on a loaded machine: this tells failing fast from hanging,
	// not how fast.
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("503 took %s, want about the 200ms timeout", d)
	}
	s.do("POST", "/api/v1/impressions/batch", "["+track("c", "during")+"]").want(t, 503)
	s.do("POST", "/api/v1/campaigns", `{"id":"d","name":"D"}`).want(t, 503)
	s.do("GET", "/api/v1/campaigns/c/stats", "").want(t, 503)
	s.do("GET", "/api/v1/campaigns/c/series", "").want(t, 503)
	s.do("GET", "/api/v1/campaigns", "").want(t, 503)
	s.do("GET", "/api/v1/campaigns/unknown", "").want(t, 503)
	for _, path := range []string{"/api/v1/campaigns/c/stats", "/api/v1/campaigns/c/series", "/api/v1/campaigns", "/api/v1/campaigns/unknown", "/readyz"} {
		s.do("HEAD", path, "").wantFor(t, "HEAD", 503)
	}
	// A campaign this instance has read stays cached: validation still
	// answers, only the counting fails.
	s.do("POST", "/api/v1/impressions", `{"campaign_id":"c"}`).want(t, 422)
	s.do("POST", "/api/v1/impressions", `{"campaign_id":"c","user_id":"u","timestamp":"2000-01-01T00:00:00Z"}`).want(t, 422)
	s.do("GET", "/readyz", "").want(t, 503)
	if m := string(s.do("GET", "/metrics", "").want(t, 200).body); !strings.Contains(m, "impressiond_redis_up 0") ||
		!strings.Contains(m, "\nimpressiond_redis_clock_offset_seconds ") || !strings.Contains(m, "\nimpressiond_redis_slice_retries_total 0\n") ||
		!strings.Contains(m, "\nimpressiond_redis_bloom_pool_full_total 0\n") {
		t.Fatal("metrics do not show Redis down")
	}

	srv.Restart()
	deadline := time.Now().Add(5 * time.Second)
	for s.do("GET", "/readyz", "").status != 200 {
		if time.Now().After(deadline) {
			t.Fatal("/readyz not 200 within 5s of Redis coming back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.createCampaign("c2")
	s.do("POST", "/api/v1/impressions", track("c2", "after")).want(t, 200)
	if st := s.stats("c2"); st.Total != 1 {
		t.Fatalf("after recovery: total %d, want 1", st.Total)
	}
}

// TestRedisRestartMidLoad: Redis frozen, then restarted (with its data, as
// a Redis with AOF or RDB comes back) while clients send and retry every
// impression until it gets a 200: requests fail meanwhile, and no pair is
// ever counted twice or lost.
func TestRedisRestartMidLoad(t *testing.T) {
	ts, srv := redisServers(t, "exact", 2, 200*time.Millisecond)
	ts[0].createCampaign("c")
	const pairs = 3000
	var counted, answered, failures atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	stopClients := sync.OnceFunc(func() { close(stop) })
	// await waits for cond, polling: Redis is a real process. On timeout it
	// stops the clients before failing, so none outlives the test.
	await := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				stopClients()
				wg.Wait()
				t.Fatalf("no %s within 30s", what)
			}
		}
	}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < pairs; i += 4 {
				for {
					r := ts[i%2].do("POST", "/api/v1/impressions", track("c", fmt.Sprintf("u%d", i)))
					if r.status == 0 {
						return // the request failed, and do reported it
					}
					if r.status == 200 {
						answered.Add(1)
						if strings.Contains(string(r.body), `"counted"`) {
							counted.Add(1)
						}
						break
					}
					failures.Add(1)
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			}
		}()
	}
	await("load under way", func() bool { return counted.Load() >= 50 })
	srv.Pause() // SIGSTOP: commands in flight time out, maybe after Redis ran them
	// Until requests fail, not for a fixed time: what the test checks
	// must not depend on how long a sleep lasted on a loaded machine.
	await("request failing while Redis is paused", func() bool { return failures.Load() > 0 })
	srv.Resume()
	before := answered.Load()
	await("request answered after Redis resumed", func() bool { return answered.Load() > before })
	srv.RestartKeepingData()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		stopClients()
		<-done
		t.Fatal("clients did not finish within 30s of Redis coming back")
	}
	// A call that timed out may have run in Redis: its retry then answers
	// duplicate. So answers of "counted" may fall short of the pairs, but
	// the total must be exact: every pair counted once.
	st := ts[1].stats("c")
	if st.Total != pairs || counted.Load() > pairs {
		t.Fatalf("total %d with %d answered counted; want a total of exactly %d", st.Total, counted.Load(), pairs)
	}
	if failures.Load() == 0 {
		t.Fatal("no request failed while Redis was paused: the test did not test anything")
	}
	t.Logf("%d requests failed and were retried; %d of %d pairs answered counted, the rest were counted by a call whose answer was lost", failures.Load(), counted.Load(), pairs)
}

// TestRedisCluster runs the API on a Redis Cluster of three masters:
// campaigns spread over slots of different nodes, single impressions and a
// batch across them, stats and the campaign list, in both modes. The keys
// of a campaign share its hash tag, so no script crosses slots.
func TestRedisCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	for _, mode := range []string{"exact", "bloom"} {
		t.Run(mode, func(t *testing.T) {
			st, err := redisstore.Open(redisstore.Options{URL: cl.URL, Mode: mode,
				Dedup: sketch.Options{TTL: time.Hour, Slices: 6, Capacity: 10000, FalsePositiveRate: 0.001}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(st.Close)
			s := newTestServer(t, mode, func(o *testOptions) { o.Dedup, o.Redis = nil, st })
			ids := []string{mode + "-a", mode + "-b", mode + "-c", mode + "-d", mode + "-e", mode + "-f"}
			var batch []string
			for _, id := range ids {
				s.createCampaign(id)
				s.do("POST", "/api/v1/impressions", track(id, "u1")).want(t, 200)
				batch = append(batch, track(id, "u1"), track(id, "u2"), track(id, "u2"))
			}
			var res struct{ Counted, Duplicates int }
			s.do("POST", "/api/v1/impressions/batch", "["+strings.Join(batch, ",")+"]").want(t, 200).decode(t, &res)
			if res.Counted != len(ids) || res.Duplicates != 2*len(ids) {
				t.Fatalf("batch across the cluster: %+v, want %d counted, %d duplicates", res, len(ids), 2*len(ids))
			}
			for _, id := range ids {
				if st := s.stats(id); st.Total != 2 || st.LastHour != 2 {
					t.Fatalf("%s: %+v, want 2", id, st)
				}
			}
			var list campaignListJSON
			s.do("GET", "/api/v1/campaigns", "").want(t, 200).decode(t, &list)
			if len(list.Campaigns) < len(ids) {
				t.Fatalf("listed %d campaigns, want at least %d", len(list.Campaigns), len(ids))
			}
		})
	}
}
