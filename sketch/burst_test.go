package sketch

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"
)

// arrival is a batch of fresh pairs arriving evenly over [at, at+over).
type arrival struct {
	at, over time.Duration
	pairs    int
}

// burstPatterns are arrival patterns in which no TTL-long interval holds
// more than c distinct pairs, for a window of TTL ttl and K = 6 slices:
// the assumption under which the rate must stay at the target.
func burstPatterns(c int, ttl time.Duration) map[string][]arrival {
	slice := ttl / 6
	return map[string][]arrival{
		"even over two TTLs":                               {{0, 2 * ttl, 2 * c}},
		"capacity in one minute":                           {{0, time.Minute, c}},
		"capacity/2 in one slice":                          {{0, slice, c / 2}},
		"capacity/K in one slice":                          {{0, slice, c / 6}},
		"steady at capacity/2, then a burst of capacity/2": {{0, 2 * ttl, c}, {2 * ttl, time.Minute, c / 2}},
		"capacity/3 in each of three slices in a row":      {{0, slice, c / 3}, {slice, slice, c / 3}, {2 * slice, slice, c / 3}},
		// The old design's worst case: each burst alone fills the window,
		// and the second starts one TTL after the first, so half of the
		// first is still within the TTL while the second arrives.
		"capacity, then capacity again one TTL later": {{0, time.Minute, c}, {ttl, time.Minute, c}},
		"capacity/2 every half TTL, four times":       {{0, time.Minute, c / 2}, {ttl / 2, time.Minute, c / 2}, {ttl, time.Minute, c / 2}, {3 * ttl / 2, time.Minute, c / 2}},
	}
}

// TestBurstsKeepTheRate: whatever the arrival pattern, while no TTL-long
// interval holds more than Capacity distinct pairs, the share of fresh
// pairs taken for repeats stays at most the target. The bound is a sum
// over the live sub-filters at their worst; the tolerance is three
// standard deviations of the measured share, since the pairs are random.
func TestBurstsKeepTheRate(t *testing.T) {
	const ttl = time.Hour
	for _, tc := range []struct {
		capacity int
		p        float64
	}{
		{100_000, 0.01},
		{100_000, 0.001},
	} {
		for name, pattern := range burstPatterns(tc.capacity, ttl) {
			t.Run(fmt.Sprintf("%g/%s", tc.p, name), func(t *testing.T) {
				t.Parallel()
				b, err := NewBloom(Options{TTL: ttl, Slices: 6, Capacity: tc.capacity, FalsePositiveRate: tc.p})
				if err != nil {
					t.Fatal(err)
				}
				fresh, lost := 0, 0
				for w, a := range pattern {
					for i := range a.pairs {
						at := t0.Add(a.at + time.Duration(int64(a.over)*int64(i)/int64(a.pairs)))
						if b.TestAndAddKey(KeyOfString(fmt.Sprint(w), fmt.Sprint(i)), at) {
							lost++
						}
						fresh++
					}
				}
				share := float64(lost) / float64(fresh)
				tol := 3 * math.Sqrt(tc.p/float64(fresh))
				st := b.Stats()
				t.Logf("%s: %d fresh pairs, %d taken for repeats: %.5f (target %g); pool %d of %d live, estimate now %.5f, full %d, overfills %d", name, fresh, lost, share, tc.p, st.Live, st.Slots, st.FalsePositive, st.PoolFull, st.Overfills)
				if share > tc.p+tol {
					t.Fatalf("share of fresh pairs taken for repeats %.5f > target %g + %.5f", share, tc.p, tol)
				}
				if st.PoolFull != 0 || st.Overfills != 0 {
					t.Fatalf("within capacity, the pool ran out: %d closes refused, %d pairs past a sub-filter's load", st.PoolFull, st.Overfills)
				}
			})
		}
	}
}

// TestBurstWorstMoment: at the moment the live sub-filters hold the most
// pairs the assumption allows (a full TTL's capacity, plus the older half
// of a burst that straddles the TTL's start), the rate at which a fresh
// pair is taken for a repeat is still within the target, and the pool's
// estimate of it agrees.
func TestBurstWorstMoment(t *testing.T) {
	const ttl, c, p = time.Hour, 100_000, 0.01
	b, err := NewBloom(Options{TTL: ttl, Slices: 6, Capacity: c, FalsePositiveRate: p})
	if err != nil {
		t.Fatal(err)
	}
	for i := range c {
		b.TestAndAddKey(KeyOfString("a", fmt.Sprint(i)), t0.Add(time.Duration(i)*time.Minute/c))
	}
	// The second burst's first half: its pairs and the first burst's
	// second half are the capacity of the last TTL, and the sub-filter
	// straddling the TTL's start holds older pairs still.
	for i := range c / 2 {
		b.TestAndAddKey(KeyOfString("b", fmt.Sprint(i)), t0.Add(ttl+time.Duration(i)*time.Minute/c))
	}
	now := t0.Add(ttl + 30*time.Second)
	const probes = 200_000
	hits := 0
	for i := range probes {
		if b.TestKey(KeyOfString("probe", fmt.Sprint(i)), now) {
			hits++
		}
	}
	got, est := float64(hits)/probes, b.Stats().FalsePositive
	t.Logf("rate at the fullest moment %.5f, estimated %.5f, target %g", got, est, p)
	if tol := 3 * math.Sqrt(p/probes); got > p+tol || est > p {
		t.Fatalf("rate %.5f (estimate %.5f) over the target %g", got, est, p)
	}
	if math.Abs(got-est) > 0.25*est+3*math.Sqrt(est/probes) {
		t.Fatalf("estimate %.5f far from the measured %.5f", est, got)
	}
}

// TestOverCapacityDegrades: three times the capacity in one minute raises
// the rate (that is the price), but no pair counted is ever counted again
// within the TTL, the memory does not move, and the pool reports that it
// ran out.
func TestOverCapacityDegrades(t *testing.T) {
	const ttl, c = time.Hour, 50_000
	b, err := NewBloom(Options{TTL: ttl, Slices: 6, Capacity: c, FalsePositiveRate: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	mem := b.Bytes()
	var counted []Key
	for i := range 3 * c {
		k := KeyOfString("c", fmt.Sprint(i))
		if !b.TestAndAddKey(k, t0.Add(time.Duration(i)*time.Minute/(3*c))) {
			counted = append(counted, k)
		}
	}
	st := b.Stats()
	t.Logf("3× capacity in a minute: %d of %d counted; %+v", len(counted), 3*c, st)
	if st.PoolFull == 0 || st.Overfills == 0 || b.Bytes() != mem {
		t.Fatalf("over capacity: %+v, memory %d (was %d); want the pool full, memory unchanged", st, b.Bytes(), mem)
	}
	for i, k := range counted {
		if !b.TestAndAddKey(k, t0.Add(ttl-time.Millisecond)) {
			t.Fatalf("counted pair %d counted again within the TTL", i)
		}
	}
}

// TestPoolWindowBounds: pairs counted at any moment of a sub-filter's life
// (closed by load during a burst, or by the clock) are blocked for the
// whole TTL and forgotten by TTL + TTL/K.
func TestPoolWindowBounds(t *testing.T) {
	const ttl, slices = time.Hour, 6
	slice := ttl / slices
	b, err := NewBloom(Options{TTL: ttl, Slices: slices, Capacity: 16_000, FalsePositiveRate: 1e-6})
	if err != nil {
		t.Fatal(err)
	}
	var at []time.Time
	for i := range 4000 { // a burst of 2000 in a second, then a pair a second for 33 min
		ts := t0.Add(time.Duration(i) * time.Second / 2000)
		if i >= 2000 {
			ts = t0.Add(time.Duration(i-2000) * time.Second)
		}
		at = append(at, ts)
	}
	slicesSortTimes(at)
	for i, ts := range at {
		if b.TestAndAddKey(KeyOfString("w", fmt.Sprint(i)), ts) {
			t.Fatalf("pair %d taken for a repeat", i)
		}
	}
	if b.Stats().PoolFull != 0 {
		t.Fatal("the pool ran out within capacity")
	}
	for i, ts := range at {
		if !b.TestKey(KeyOfString("w", fmt.Sprint(i)), ts.Add(ttl-time.Nanosecond)) {
			t.Fatalf("pair %d counted at %s forgotten within the TTL", i, ts.Sub(t0))
		}
	}
	for i, ts := range at {
		if b.TestKey(KeyOfString("w", fmt.Sprint(i)), ts.Add(ttl+slice+time.Nanosecond)) {
			t.Fatalf("pair %d counted at %s still blocked after TTL + TTL/K", i, ts.Sub(t0))
		}
	}
}

func slicesSortTimes(ts []time.Time) {
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
}

// TestSubFilterRateIsStarShaped checks the property the bound rests on: a
// sub-filter's rate per pair, f(n)/n, never falls as n grows, so a pool's
// rate at a given total load is highest when its sub-filters are full.
func TestSubFilterRateIsStarShaped(t *testing.T) {
	for _, o := range []Options{{}, {Capacity: 100_000, FalsePositiveRate: 0.01}, {Capacity: 1000, FalsePositiveRate: 1e-6, Slices: 24}} {
		b, err := NewBloom(o)
		if err != nil {
			t.Fatal(err)
		}
		for n := 2; n < len(b.fpAt); n++ {
			if b.fpAt[n]/float64(n) < b.fpAt[n-1]/float64(n-1)*(1-1e-9) {
				t.Fatalf("%+v: f(%d)/%d = %g < f(%d)/%d = %g", o, n, n, b.fpAt[n]/float64(n), n-1, n-1, b.fpAt[n-1]/float64(n-1))
			}
		}
		if f := b.fpAt[b.pool.Load]; f > b.pool.Rate {
			t.Fatalf("%+v: a full sub-filter's rate %g over its budget %g", o, f, b.pool.Rate)
		}
	}
}
