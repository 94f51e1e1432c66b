package redisstore

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/impressiond/impressiond/internal/redistest"
	"github.com/impressiond/impressiond/sketch"
)

// The pool tests run a campaign sized for poolCapacity pairs per TTL at
// poolFP, small enough to fill in a second: a 1 h window of 6 slices, 17
// sub-filters of 2,500 pairs (sketch.UnblockedPool).
const (
	poolCapacity = 20_000
	poolFP       = 0.01
	poolTTL      = time.Hour
	poolK        = 6
	poolSlice    = poolTTL / poolK
)

// openPool opens a bloom store on clock, with a generous timeout: a
// 1000-item batch probing many sub-filters takes tens of milliseconds, more
// on a machine shared with other tests.
func openPool(t *testing.T, srv *redistest.Server, clock *fakeClock) *Store {
	t.Helper()
	return open(t, Options{URL: srv.URL, Mode: "bloom", Clock: clock.Now, Timeout: 5 * time.Second,
		Dedup: sketch.Options{TTL: poolTTL, Slices: poolK, Capacity: poolCapacity, FalsePositiveRate: poolFP}})
}

// freshPairs hands out pairs of campaign "c" never handed out before: a
// seeded random prefix and a sequence number.
type freshPairs struct {
	prefix uint64
	next   int
}

func newFreshPairs(seed uint64) *freshPairs {
	return &freshPairs{prefix: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)).Uint64()}
}

func (p *freshPairs) take(n int, minute int64) []Item {
	items := make([]Item, n)
	for i := range items {
		items[i] = Item{Campaign: "c", User: fmt.Appendf(nil, "%016x-%d", p.prefix, p.next), Minute: minute}
		p.next++
	}
	return items
}

// missed tracks items in batches of 1000 and returns how many were not
// counted.
func missed(t *testing.T, s *Store, items []Item) int {
	t.Helper()
	n := 0
	for len(items) > 0 {
		b := items[:min(len(items), maxItemsPerCall)]
		for _, c := range track(t, s, b...) {
			if !c {
				n++
			}
		}
		items = items[len(b):]
	}
	return n
}

// undercountBound is the most fresh pairs of n that may be taken for
// repeats at target rate fp: 1.5·fp (the rate is a bound, and the test
// sizes are small), plus three standard deviations of a binomial share.
func undercountBound(n int, fp float64) float64 {
	return 1.5*fp + 3*math.Sqrt(fp*(1-fp)/float64(n))
}

// TestPoolBursts: under arrival patterns in which no TTL-long interval
// holds more than Capacity distinct pairs, however bursty, the share of
// fresh pairs taken for repeats stays within undercountBound, the pool
// never fills (PoolFull stays 0) and never holds more than P sub-filters.
func TestPoolBursts(t *testing.T) {
	const c = poolCapacity
	type burst struct {
		at time.Duration // from the start
		n  int
	}
	every := func(n, times int, step time.Duration) []burst {
		var out []burst
		for i := range times {
			out = append(out, burst{time.Duration(i) * step, n})
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		bursts []burst
	}{
		{"capacity in one instant", []burst{{0, c}}},
		{"capacity/2 in one instant", []burst{{0, c / 2}}},
		{"capacity/K in one instant", []burst{{0, c / poolK}}},
		// Capacity spread evenly over the TTL, in 20 bursts per TTL, kept
		// up for two TTLs more.
		{"steady for 3 TTLs", every(c/20, 60, poolTTL/20+time.Millisecond)},
		// Capacity/2 in two slices in a row, again just over a TTL later.
		{"capacity/2 in consecutive slices", []burst{
			{0, c / 2}, {poolSlice, c / 2},
			{poolTTL + time.Millisecond, c / 2}, {poolTTL + poolSlice + time.Millisecond, c / 2}}},
		{"capacity/4 every TTL/4", every(c/4, 8, poolTTL/4+time.Millisecond)},
		// A burst, and another once the first has left the window...
		{"capacity, again after TTL + TTL/K", []burst{{0, c}, {poolTTL + poolSlice, c}}},
		// ... or as soon as it is a TTL old.
		{"capacity, again after TTL", []burst{{0, c}, {poolTTL, c}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each on its own Redis
			srv := redistest.Start(t)
			clock := newFakeClock(t)
			s := openPool(t, srv, clock)
			pairs := newFreshPairs(uint64(len(tc.name)))
			start := clock.Now()
			fresh, lost, worst := 0, 0, 0.0
			for _, b := range tc.bursts {
				clock.Add(start.Add(b.at).Sub(clock.Now()))
				m := missed(t, s, pairs.take(b.n, clock.Now().Unix()/60))
				fresh, lost, worst = fresh+b.n, lost+m, max(worst, float64(m)/float64(b.n))
				if n := len(redisKeys(t, s, "imp:{c}:bp:*")); n > s.pool.Slots {
					t.Fatalf("%d sub-filter keys in Redis, want at most P = %d", n, s.pool.Slots)
				}
			}
			got, bound := float64(lost)/float64(fresh), undercountBound(fresh, poolFP)
			t.Logf("undercount %.4f%% of %d fresh pairs (worst burst %.4f%%), bound %.4f%%", 100*got, fresh, 100*worst, 100*bound)
			if got > bound {
				t.Errorf("undercount %.4f of %d fresh pairs, want at most %.4f (fp %g)", got, fresh, bound, poolFP)
			}
			if n := s.PoolFull(); n != 0 {
				t.Errorf("%d pairs added to a full pool within capacity, want 0", n)
			}
			checkPoolTTLs(t, s, poolTTL, poolK)
		})
	}
}

// TestPoolOverCapacity: 2.5 × Capacity distinct pairs in one instant, more
// than the P sub-filters take (P·Load ≈ 2.1 × Capacity), each sent twice:
// the second send is never counted, the full pool is reported, and Redis
// never holds more than P sub-filters.
func TestPoolOverCapacity(t *testing.T) {
	srv := redistest.Start(t)
	clock := newFakeClock(t)
	s := openPool(t, srv, clock)
	pairs := newFreshPairs(3)
	minute := clock.Now().Unix() / 60
	lost := 0
	for range 5 * poolCapacity / 2 / maxItemsPerCall {
		items := pairs.take(maxItemsPerCall, minute)
		lost += missed(t, s, items)
		if m := missed(t, s, items); m != len(items) {
			t.Fatalf("%d of %d pairs counted on their second send", len(items)-m, len(items))
		}
		if n := len(redisKeys(t, s, "imp:{c}:bp:*")); n > s.pool.Slots {
			t.Fatalf("%d sub-filter keys in Redis, want at most P = %d", n, s.pool.Slots)
		}
	}
	for i, it := range pairs.take(20, minute) { // and one by one
		track(t, s, it)
		if track(t, s, it)[0] {
			t.Fatalf("single pair %d counted on its second send", i)
		}
	}
	if s.PoolFull() == 0 {
		t.Fatal("no pair reported added to a full pool at 2.5 × capacity")
	}
	t.Logf("2.5 × capacity in one instant: undercount %.2f%%, %d pairs added to a full pool", 100*float64(lost)/float64(5*poolCapacity/2), s.PoolFull())
}

// TestPoolWindow: a pair is blocked until its sub-filter's last pair is a
// TTL old, so never within the TTL, and always counted again after
// TTL + TTL/K, even when its sub-filter took pairs for a whole slice after
// it; through the single and the batch script alike.
func TestPoolWindow(t *testing.T) {
	for _, batch := range []bool{false, true} {
		t.Run(fmt.Sprintf("batch=%v", batch), func(t *testing.T) {
			srv := redistest.Start(t)
			clock := newFakeClock(t)
			s := openPool(t, srv, clock)
			fillers := newFreshPairs(7)
			// send tracks it (with a fresh filler pair in a batch) and
			// tells whether it was counted.
			send := func(it Item) bool {
				if batch {
					return track(t, s, it, fillers.take(1, 1)[0])[0]
				}
				return track(t, s, it)[0]
			}
			a, b := Item{"c", []byte("a"), 1, 1, nil}, Item{"c", []byte("b"), 1, 1, nil}
			start := clock.Now()
			at := func(d time.Duration) { clock.Add(start.Add(d).Sub(clock.Now())) }
			for _, step := range []struct {
				at   time.Duration
				it   Item
				want bool
			}{
				{0, a, true},                            // opens a sub-filter
				{poolSlice - time.Millisecond, b, true}, // the same one, its last pair
				{poolTTL - time.Millisecond, a, false},  // within a's TTL
				{poolSlice + poolTTL - 2*time.Millisecond, b, false},
				{poolTTL + poolSlice - time.Millisecond, a, true}, // a's sub-filter is freed only now
				{poolTTL + poolSlice, a, false},                   // and a counted again
				{poolSlice - time.Millisecond + poolTTL + poolSlice + time.Millisecond, b, true},
			} {
				at(step.at)
				if got := send(step.it); got != step.want {
					t.Fatalf("%s at +%s: counted %v, want %v", step.it.User, step.at, got, step.want)
				}
			}
		})
	}
}

// TestPoolBatchRepeats: a pair repeated inside a batch is a repeat, also
// when the open sub-filter fills up between its two sights.
func TestPoolBatchRepeats(t *testing.T) {
	srv := redistest.Start(t)
	clock := newFakeClock(t)
	s := openPool(t, srv, clock)
	pairs := newFreshPairs(11)
	missed(t, s, pairs.take(s.pool.Load-100, 1)) // 100 pairs short of full
	half := pairs.take(maxItemsPerCall/2, 1)
	got := track(t, s, append(half, half...)...)
	first := 0
	for i, c := range got {
		if i >= len(half) && c {
			t.Fatalf("item %d, a repeat of item %d of the same batch, counted", i, i-len(half))
		}
		if c {
			first++
		}
	}
	if lost := float64(len(half)-first) / float64(len(half)); lost > undercountBound(len(half), poolFP) {
		t.Fatalf("%d of %d fresh pairs counted", first, len(half))
	}
}
