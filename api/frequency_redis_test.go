package api

import (
	"testing"
	"time"

	"github.com/impressiond/impressiond/internal/redistest"
	"github.com/impressiond/impressiond/sketch"
	"github.com/impressiond/impressiond/store/redisstore"
)

// clockedRedisServers serves n Servers sharing one redis-server and one
// clock, moved by hand: each tracker's and the shared clock of the
// stores (Options.Clock), so the frequency windows move for all alike.
func clockedRedisServers(t *testing.T, mode string, n int) ([]*testServer, *fakeClock) {
	t.Helper()
	srv := redistest.Start(t)
	clock := &fakeClock{t: testNow}
	var out []*testServer
	for range n {
		st, err := redisstore.Open(redisstore.Options{URL: srv.URL, Mode: mode, Timeout: 5 * time.Second, Clock: clock.Now,
			Dedup: sketch.Options{TTL: time.Hour, Slices: 6, Capacity: 100000, FalsePositiveRate: 0.001}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		out = append(out, newTestServer(t, mode, func(o *testOptions) { o.Dedup, o.Redis, o.Now = nil, st, clock.Now }))
	}
	return out, clock
}

// TestFrequencyCheckOnRedis: TestFrequencyCheck with two servers on one
// Redis: exposures tracked through either count in both's checks, caps
// set or changed through one are the other's, a campaign deleted through
// one is not found by the other, and both answer alike.
func TestFrequencyCheckOnRedis(t *testing.T) {
	for _, mode := range []string{"exact", "bloom"} {
		t.Run(mode, func(t *testing.T) {
			ts, clock := clockedRedisServers(t, mode, 2)
			both := func(user string, want []string, ids ...string) {
				t.Helper()
				for s, srv := range ts {
					got := srv.check(user, ids...)
					for i := range want {
						if got.Campaigns[i].String() != want[i] {
							t.Fatalf("server %d, item %d: %s, want %s", s, i, got.Campaigns[i], want[i])
						}
					}
				}
			}
			createCapped(ts[0], "a", `[{"max":3,"window":"1h"},{"max":10,"window":"24h"}]`)
			createCapped(ts[1], "b", `[{"max":1,"window":"10m"}]`)
			createCapped(ts[0], "free", `[]`)
			both("u1", []string{"allowed 0/3@1h 0/10@24h", "allowed 0/1@10m", "allowed", "404 campaign not found", "allowed 0/3@1h 0/10@24h"},
				"a", "b", "free", "nope", "a")
			ts[0].track("a", "u1")
			ts[1].track("a", "u1") // a duplicate, through the other server
			ts[1].track("b", "u1")
			ts[0].track("a", "u2")
			both("u1", []string{"capped 1/1@10m", "allowed 2/3@1h 2/10@24h"}, "b", "a")
			ts[1].do("POST", "/api/v1/impressions/batch", "["+track("a", "u1")+"]").want(t, 200)
			both("u1", []string{"capped 3/3@1h 3/10@24h"}, "a")
			both("u2", []string{"allowed 1/3@1h 1/10@24h"}, "a")

			// Caps changed through server 1 are server 0's, which has a
			// cached since it created it.
			ts[1].do("PUT", "/api/v1/campaigns/a/frequency-caps", `[{"max":5,"window":"1h"}]`).want(t, 200)
			both("u1", []string{"allowed 3/5@1h"}, "a")
			ts[0].do("PUT", "/api/v1/campaigns/b/frequency-caps", `[]`).want(t, 200)
			both("u1", []string{"allowed"}, "b")

			clock.Add(time.Hour + 10*time.Minute)
			both("u1", []string{"allowed 0/5@1h"}, "a")
			ts[0].do("DELETE", "/api/v1/campaigns/a", "").want(t, 204)
			both("u1", []string{"404 campaign not found", "allowed"}, "a", "free")
		})
	}
}
