package tracker

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/impressiond/impressiond/internal/redistest"
	"github.com/impressiond/impressiond/store/redisstore"
)

// Frequency caps with trackers sharing one Redis: exposures tracked
// through any instance count in every instance's checks, caps set through
// one are the ones every instance checks by, and both live in Redis.

// openShared opens a tracker on srv whose Redis shares clock, closed when
// the test ends (or before, by the test).
func openShared(t *testing.T, srv *redistest.Server, mode string, clock *fakeClock) *Tracker {
	t.Helper()
	r, err := redisstore.Open(redisstore.Options{URL: srv.URL, Mode: mode, Timeout: 5 * time.Second, Clock: clock.Now, Dedup: suiteDedup})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	tr, err := Open(Options{Redis: r, Now: clock.Now, MaxSkew: time.Minute, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// TestSharedFrequency: two trackers on one Redis answer every check alike:
// exposures through either (single and batched, counted or duplicate)
// count in both; caps changed or removed through one are the ones the
// other checks by, though it had the campaign cached; a campaign deleted
// through one is not found by the other; and a tracker opened later on
// the same Redis finds the caps and the exposures.
func TestSharedFrequency(t *testing.T) {
	for _, mode := range []string{"exact", "bloom"} {
		t.Run(mode, func(t *testing.T) {
			srv := redistest.Start(t)
			clock := &fakeClock{t: suiteNow(t)}
			a, b := openShared(t, srv, mode, clock), openShared(t, srv, mode, clock)
			start := clock.Now().Add(-time.Hour)
			createCaps(t, a, "c", start, "3/1h", "10/24h")
			createCaps(t, b, "d", start, "1/10m")
			both := func(user string, want string, ids ...string) {
				t.Helper()
				for i, tr := range []*Tracker{a, b} {
					if got := answers(t, tr, user, ids...); got != want {
						t.Fatalf("tracker %d: %s, want %s", i, got, want)
					}
				}
			}
			both("u", "c: allowed 0/3@1h 0/10@24h; d: allowed 0/1@10m; nope: 404", "c", "d", "nope")
			trackN(t, b, "c", "u", 2) // counted, then a duplicate
			trackN(t, a, "c", "u", 1)
			out := make([]Outcome, 3)
			if err := b.TrackBatch([]Impression{*imp("d", "u"), *imp("c", "v"), *imp("c", "v")}, out); err != nil {
				t.Fatal(err)
			}
			both("u", "c: capped 3/3@1h 3/10@24h; d: capped 1/1@10m", "c", "d")
			both("v", "c: allowed 2/3@1h 2/10@24h", "c")

			// b has c cached with its caps: a's change is what b checks by.
			if _, err := a.SetFrequencyCaps("c", capSpecs("5/1h", "4/168h")); err != nil {
				t.Fatal(err)
			}
			both("u", "c: allowed 3/5@1h 3/4@168h", "c")
			if l, _, err := b.CampaignsWithPrefix("c", "", 10); err != nil || len(l) != 1 || fmt.Sprint(l[0].Caps) != "[{5 1h0m0s} {4 168h0m0s}]" {
				t.Fatalf("b lists %+v, %v", l, err)
			}
			if _, err := a.SetFrequencyCaps("d", nil); err != nil {
				t.Fatal(err)
			}
			both("u", "d: allowed", "d")

			clock.Add(70 * time.Minute)
			both("u", "c: allowed 0/5@1h 3/4@168h", "c")
			trackN(t, b, "c", "u", 1)
			both("u", "c: capped 1/5@1h 4/4@168h; c: capped 1/5@1h 4/4@168h", "c", "c")

			// Made again after a deletion: a new campaign, no exposures.
			if err := b.Delete("c"); err != nil {
				t.Fatal(err)
			}
			both("u", "c: 404", "c")
			createCaps(t, b, "c", start, "1/1h")
			both("u", "c: allowed 0/1@1h", "c")
			trackN(t, a, "c", "u", 1)

			// Caps and exposures are Redis's: a tracker opened later
			// sees them.
			a.Close()
			b.Close()
			n := openShared(t, srv, mode, clock)
			if c, err := n.Campaign("c"); err != nil || fmt.Sprint(c.Caps) != "[{1 1h0m0s}]" {
				t.Fatalf("a new tracker reads c as %+v, %v", c, err)
			}
			if got, want := answers(t, n, "u", "c", "d"), "c: capped 1/1@1h; d: allowed"; got != want {
				t.Fatalf("a new tracker: %s, want %s", got, want)
			}
		})
	}
}

// TestSharedFrequencyStaleCache: the shared state checks every item by
// the campaign as Redis has it, whatever this instance cached: an item
// looked up before another instance gave its campaign caps, or changed
// them, is answered by the campaign as it is now.
func TestSharedFrequencyStaleCache(t *testing.T) {
	srv := redistest.Start(t)
	clock := &fakeClock{t: suiteNow(t)}
	a, b := openShared(t, srv, "exact", clock), openShared(t, srv, "exact", clock)
	start := clock.Now().Add(-time.Hour)
	create(t, a, "c", start)
	createCaps(t, a, "k", start, "9/1h")
	trackN(t, b, "c", "u", 2) // b caches c, without caps
	trackN(t, b, "k", "u", 1)
	sb := b.st.(*shared)
	cached, kc := sb.cache.get([]byte("c")), sb.cache.get([]byte("k"))
	if cached == nil || len(cached.Caps) != 0 || kc == nil {
		t.Fatalf("b's cache: %+v, %+v", cached, kc)
	}
	if _, err := a.SetFrequencyCaps("c", capSpecs("2/1h")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SetFrequencyCaps("k", capSpecs("1/24h", "7/10m")); err != nil {
		t.Fatal(err)
	}
	// As Tracker.Frequency prepares them from b's cache.
	out := []FrequencyResult{
		{CampaignID: "c", Allowed: true, Exposures: []Exposure{}},
		{CampaignID: "k", Allowed: true, Exposures: []Exposure{{Window: time.Hour, Max: 9}}},
	}
	items := []frequencyItem{{c: cached, index: 0}, {c: kc, index: 1}}
	if err := sb.frequency(items, []byte("u"), clock.Now(), out); err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(out), "[{c <nil> true [{1h0m0s 2 2}]} {k <nil> true [{24h0m0s 1 1} {10m0s 1 7}]}]"; got != want {
		t.Fatalf("b's check from its cache: %s, want %s", got, want)
	}
	if err := a.Delete("c"); err != nil {
		t.Fatal(err)
	}
	out = out[:1]
	out[0] = FrequencyResult{CampaignID: "c", Allowed: true, Exposures: []Exposure{{Window: time.Hour, Max: 2}}}
	if err := sb.frequency([]frequencyItem{{c: sb.cache.get([]byte("c")), index: 0}}, []byte("u"), clock.Now(), out); err != nil {
		t.Fatal(err)
	}
	if out[0].Err != ErrCampaignNotFound {
		t.Fatalf("deleted through a: %+v, want ErrCampaignNotFound", out[0])
	}
}

// TestSharedFrequencyAgreesWithLocal: the same seeded run of tracks
// (single, batched, refused), cap changes and checks through an
// in-process tracker (exact frequency counts) and a shared one answers
// every check alike, in both dedup modes of the shared one.
func TestSharedFrequencyAgreesWithLocal(t *testing.T) {
	for _, mode := range []string{"exact", "bloom"} {
		t.Run(mode, func(t *testing.T) {
			clock := &fakeClock{t: suiteNow(t)}
			local := openTracker(t, clock, nil)
			shared := openShared(t, redistest.Start(t), mode, clock)
			trs := []*Tracker{local, shared}
			start := clock.Now().Add(-time.Hour)
			ids := []string{"a", "b", "c"}
			caps := [][]string{{"2/1m"}, {"3/5m", "4/1h"}, {"5/90m", "6/6h", "7/24h", "8/168h"}, {"1/36h"}, nil}
			for i, id := range ids {
				for _, tr := range trs {
					createCaps(t, tr, id, start, caps[i]...)
				}
			}
			users := []string{"u0", "u1"}
			gaps := []time.Duration{0, time.Second, 40 * time.Second, 3 * time.Minute, 25 * time.Minute, 2 * time.Hour, 9 * time.Hour}
			rng := rand.New(rand.NewPCG(5, 8))
			for step := range 400 {
				clock.Add(gaps[rng.IntN(len(gaps))])
				switch r := rng.IntN(10); {
				case r < 5:
					id, u := ids[rng.IntN(len(ids))], users[rng.IntN(len(users))]
					batch := []Impression{*imp(id, u)}
					if r == 0 {
						batch = append(batch, *imp(id, u), *stamped(id, u, start.Add(-time.Minute))) // a repeat, and one refused
					}
					for _, tr := range trs {
						if err := tr.TrackBatch(batch, make([]Outcome, len(batch))); err != nil {
							t.Fatal(err)
						}
					}
				case r < 6:
					id, c := ids[rng.IntN(len(ids))], caps[rng.IntN(len(caps))]
					for _, tr := range trs {
						if _, err := tr.SetFrequencyCaps(id, capSpecs(c...)); err != nil {
							t.Fatal(err)
						}
					}
				default:
					u := users[rng.IntN(len(users))]
					want := answers(t, local, u, ids...)
					if got := answers(t, shared, u, ids...); got != want {
						t.Fatalf("step %d, %s: shared %s, in process %s", step, u, got, want)
					}
				}
			}
		})
	}
}
