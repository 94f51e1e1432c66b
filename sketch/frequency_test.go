package sketch

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// freqBase is an arbitrary instant aligned to 6 hours, and so to the start
// of a slice of every level. Tests derive every time from it and pass it
// in; nothing compares it with the real clock.
var freqBase = time.Unix(1_700_000_000-1_700_000_000%21600, 0)

// freqKinds are the implementations every behaviour test runs against.
// The sketch is small; with the few keys of these tests its keys do not
// share counters, so it answers exactly too unless a test says otherwise.
var freqKinds = []struct {
	name  string
	make  func() Frequency
	exact bool // answers exactly whatever the load
}{
	{"exact", func() Frequency { return NewFrequencyExact() }, true},
	{"sketch", func() Frequency { return NewFrequencySketch(1000) }, false},
}

// freqTestWindows are the windows the boundary tests walk.
var freqTestWindows = []time.Duration{time.Minute, 5 * time.Minute, 6 * time.Minute, 59 * time.Minute, time.Hour,
	90 * time.Minute, 6 * time.Hour, 24 * time.Hour, 36 * time.Hour, 168 * time.Hour}

// naiveFreq is the reference: every exposure's time, per key, counted by
// the rule as written, with time.Truncate (slices of every level divide a
// day, so Truncate's alignment, from year 1, is the Unix epoch's).
type naiveFreq map[uint64][]time.Time

func (n naiveFreq) add(key uint64, at time.Time) { n[key] = append(n[key], at) }

func (n naiveFreq) count(key uint64, w time.Duration, now time.Time) uint64 {
	w = min(max(w, time.Minute), 168*time.Hour)
	g := FrequencySlice(w)
	from, to := now.Add(-w).Truncate(g), now.Truncate(g)
	var c uint64
	for _, e := range n[key] {
		if s := e.Truncate(g); !s.Before(from) && !s.After(to) {
			c++
		}
	}
	return c
}

// fkey is the key of test pair i: a uniformly distributed 64-bit value, as
// the service's keyed hashes are (the sketch takes the block from the high
// bits and the counters from the low ones, so small integers would share
// both).
func fkey(i int) uint64 {
	z := uint64(i) + 0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

func TestFrequencySlice(t *testing.T) {
	for _, tc := range []struct {
		w, want time.Duration
	}{
		{0, time.Minute},
		{time.Minute, time.Minute},
		{6*time.Minute - 1, time.Minute}, // under 6 minutes: 1m, more than w/6
		{6 * time.Minute, time.Minute},
		{time.Hour - 1, time.Minute},
		{time.Hour, 10 * time.Minute}, // 6·10m fits
		{6*time.Hour - 1, 10 * time.Minute},
		{6 * time.Hour, time.Hour},
		{36*time.Hour - 1, time.Hour},
		{36 * time.Hour, 6 * time.Hour},
		{168 * time.Hour, 6 * time.Hour},
		{1000 * time.Hour, 6 * time.Hour},
	} {
		if got := FrequencySlice(tc.w); got != tc.want {
			t.Errorf("FrequencySlice(%v) = %v, want %v", tc.w, got, tc.want)
		}
	}
	// The slice is at most w/6 from 6 minutes on.
	for w := 6 * time.Minute; w <= MaxFrequencyWindow; w += 7 * time.Minute {
		if g := FrequencySlice(w); 6*g > w {
			t.Fatalf("FrequencySlice(%v) = %v, more than a sixth", w, g)
		}
	}
}

func TestFloorDivBeforeEpoch(t *testing.T) {
	for _, tc := range []struct{ a, b, want int64 }{
		{0, 60, 0}, {59, 60, 0}, {60, 60, 1}, {-1, 60, -1}, {-60, 60, -1}, {-61, 60, -2},
	} {
		if got := floorDiv(tc.a, tc.b); got != tc.want {
			t.Errorf("floorDiv(%d, %d) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestFrequencyBoundaries checks, for every window of freqTestWindows and
// nows at the edges of a slice, the span Count reads: all of (now−w, now],
// reaching back to the start of now−w's slice and never to the slice
// before, and forward to the end of now's slice, not beyond. Each case has
// its own key; adds are at most one slice of the window's level ahead of
// now, within the guarantee.
func TestFrequencyBoundaries(t *testing.T) {
	for _, k := range freqKinds {
		for _, w := range freqTestWindows {
			g := FrequencySlice(w)
			for _, off := range []time.Duration{0, time.Nanosecond, g / 2, g - time.Nanosecond} {
				now := freqBase.Add(1000*time.Hour + off)
				t.Run(fmt.Sprintf("%s/w=%v/now+%v", k.name, w, off), func(t *testing.T) {
					f := k.make()
					back := now.Add(-w).Truncate(g) // start of now−w's slice
					cases := []struct {
						name string
						at   time.Time
						want uint64
					}{
						{"at now", now, 1},
						{"just inside the window", now.Add(-w + time.Nanosecond), 1},
						{"exactly w before now", now.Add(-w), 1},
						{"start of now−w's slice", back, 1},
						{"end of the slice before", back.Add(-time.Nanosecond), 0},
						{"a slice before now−w", now.Add(-w - g), 0},
						{"end of now's slice", now.Truncate(g).Add(g - time.Nanosecond), 1},
						{"start of the next slice", now.Truncate(g).Add(g), 0},
					}
					for i, c := range cases {
						f.Add(fkey(i), c.at)
					}
					for i, c := range cases {
						if got := f.Count(fkey(i), w, now); got != c.want {
							t.Errorf("%s (%v before now): got %d, want %d", c.name, now.Sub(c.at), got, c.want)
						}
					}
				})
			}
		}
	}
}

// TestFrequencyExposureLifetime follows one exposure at several offsets in
// its slice: counted from its arrival until w later, and on until its
// slice is older than now−w's, which is less than one slice more; not
// counted from then on.
func TestFrequencyExposureLifetime(t *testing.T) {
	for _, k := range freqKinds {
		for _, w := range freqTestWindows {
			g := FrequencySlice(w)
			t.Run(fmt.Sprintf("%s/w=%v", k.name, w), func(t *testing.T) {
				f := k.make()
				offs := []time.Duration{0, time.Nanosecond, time.Second, g / 2, g - time.Nanosecond}
				for i, off := range offs {
					f.Add(fkey(i), freqBase.Add(off))
				}
				for i, off := range offs {
					e := freqBase.Add(off)
					gone := freqBase.Add(g + w) // (s(e)+1)·g + w: s(now−w) > s(e) from here
					for _, c := range []struct {
						now  time.Time
						want uint64
					}{
						{e, 1},
						{e.Add(w - time.Nanosecond), 1},
						{e.Add(w), 1},
						{gone.Add(-time.Nanosecond), 1},
						{gone, 0},
						{gone.Add(g), 0},
					} {
						if got := f.Count(fkey(i), w, c.now); got != c.want {
							t.Errorf("exposure at slice+%v, now %v after it: got %d, want %d", off, c.now.Sub(e), got, c.want)
						}
					}
					if reach := gone.Sub(e) - w; reach > g {
						t.Errorf("exposure at slice+%v counted %v past w, more than the slice %v", off, reach, g)
					}
				}
			})
		}
	}
}

// TestFrequencyBeforeEpoch runs exposures across the Unix epoch, where
// slice indexes turn negative, counting every window after each of them:
// slices stay aligned.
func TestFrequencyBeforeEpoch(t *testing.T) {
	epoch := time.Unix(0, 0)
	for _, k := range freqKinds {
		t.Run(k.name, func(t *testing.T) {
			f, ref := k.make(), naiveFreq{}
			for i := range 300 {
				at := epoch.Add(time.Duration(i-200) * 37 * time.Second)
				f.Add(fkey(7), at)
				ref.add(fkey(7), at)
				for _, w := range freqTestWindows {
					for _, now := range []time.Time{at, at.Add(-time.Nanosecond), at.Add(17 * time.Second)} {
						if got, want := f.Count(fkey(7), w, now), ref.count(fkey(7), w, now); got != want {
							t.Fatalf("w=%v now=epoch%+v: got %d, want %d", w, now.Sub(epoch), got, want)
						}
					}
				}
			}
		})
	}
}

// TestFrequencyWindowsOfOneKey reads every window of one key at one now,
// and checks keys do not disturb each other.
func TestFrequencyWindowsOfOneKey(t *testing.T) {
	for _, k := range freqKinds {
		t.Run(k.name, func(t *testing.T) {
			f, ref := k.make(), naiveFreq{}
			now := freqBase.Add(200 * time.Hour)
			r := rand.New(rand.NewPCG(3, 4))
			for i := range 400 {
				// Older first: exposures arrive in time order.
				at := now.Add(-time.Duration(400-i) * 26 * time.Minute).Add(time.Duration(r.IntN(1000)) * time.Second)
				f.Add(fkey(1), at)
				ref.add(fkey(1), at)
				if i%3 == 0 {
					f.Add(fkey(2), at.Add(time.Second))
					ref.add(fkey(2), at.Add(time.Second))
				}
			}
			for _, w := range append(freqTestWindows, 2*time.Hour, 12*time.Hour, 48*time.Hour, 100*time.Hour) {
				for _, key := range []uint64{fkey(1), fkey(2), fkey(3)} {
					if got, want := f.Count(key, w, now), ref.count(key, w, now); got != want {
						t.Errorf("key %d, w=%v: got %d, want %d", key, w, got, want)
					}
				}
			}
			if f.Count(fkey(1), MaxFrequencyWindow, now) == f.Count(fkey(2), MaxFrequencyWindow, now) {
				t.Fatal("keys 1 and 2 count alike: their exposures mixed")
			}
		})
	}
}

// TestFrequencyClampsWindow checks a window shorter than a minute reads a
// minute's span, and one longer than 168 hours no further than 168 hours
// (and its reach-back).
func TestFrequencyClampsWindow(t *testing.T) {
	for _, k := range freqKinds {
		f := k.make()
		now := freqBase.Add(500 * time.Hour)
		f.Add(fkey(1), now.Add(-200*time.Hour))
		f.Add(fkey(1), now.Add(-50*time.Second))
		for _, tc := range []struct {
			w    time.Duration
			want uint64
		}{{0, 1}, {-time.Hour, 1}, {time.Second, 1}, {169 * time.Hour, 1}, {1000 * time.Hour, 1}} {
			if got := f.Count(fkey(1), tc.w, now); got != tc.want {
				t.Errorf("%s: w=%v: got %d, want %d", k.name, tc.w, got, tc.want)
			}
		}
	}
}

// freqEvent is one step of a random history: an exposure, or an Advance.
type freqEvent struct {
	key     uint64
	at      time.Time
	advance bool
}

// randomHistory returns exposures of keys (uniform random 64-bit keys,
// some exposed in bursts of seconds, some sparsely over days) over span,
// in time order, with Advance events every few simulated seconds to
// minutes.
func randomHistory(r *rand.Rand, keys []uint64, n int, span time.Duration) []freqEvent {
	var ev []freqEvent
	now := freqBase
	step := span / time.Duration(n)
	for range n {
		now = now.Add(time.Duration(r.Int64N(int64(2 * step))))
		switch r.IntN(10) {
		case 0:
			ev = append(ev, freqEvent{at: now, advance: true})
		case 1: // a burst on one key
			k := keys[r.IntN(len(keys))]
			for range r.IntN(20) {
				now = now.Add(time.Duration(r.IntN(5000)) * time.Millisecond)
				ev = append(ev, freqEvent{key: k, at: now})
			}
		default:
			ev = append(ev, freqEvent{key: keys[r.IntN(len(keys))], at: now})
		}
	}
	return ev
}

func randomKeys(r *rand.Rand, n int) []uint64 {
	keys := make([]uint64, n)
	for i := range keys {
		keys[i] = r.Uint64()
	}
	return keys
}

// randomWindow is a window of any length from 1 minute to 168 hours,
// down to the nanosecond, biased towards short ones.
func randomWindow(r *rand.Rand) time.Duration {
	if r.IntN(3) == 0 {
		return freqTestWindows[r.IntN(len(freqTestWindows))]
	}
	return MinFrequencyWindow + time.Duration(r.Float64()*r.Float64()*float64(MaxFrequencyWindow-MinFrequencyWindow))
}

// TestFrequencyMatchesReference replays random histories over ten days
// into each kind and a naive list of exposures, querying random keys and
// windows at nows from the latest time to a minute before it: exact counts
// are equal, sketch counts never below, including a sketch of a few
// blocks per slot under thousands of keys.
func TestFrequencyMatchesReference(t *testing.T) {
	kinds := append(freqKinds[:len(freqKinds):len(freqKinds)], struct {
		name  string
		make  func() Frequency
		exact bool
	}{"sketch-overloaded", func() Frequency { return newFrequencySketch(1, freqParams{depth: 4, blocksPerPair: 0.05}) }, false})
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(5, 6))
			keys := randomKeys(r, 60)
			if k.name == "sketch-overloaded" {
				keys = randomKeys(r, 3000)
			}
			f, ref := k.make(), naiveFreq{}
			var latest time.Time
			queries, over := 0, 0
			for i, e := range randomHistory(r, keys, 20000, 240*time.Hour) {
				latest = e.at
				if e.advance {
					f.Advance(e.at)
				} else {
					f.Add(e.key, e.at)
					ref.add(e.key, e.at)
				}
				if i%5 != 0 {
					continue
				}
				key := keys[r.IntN(len(keys))]
				w := randomWindow(r)
				now := latest.Add(-time.Duration(r.Int64N(int64(time.Minute))))
				got, want := f.Count(key, w, now), ref.count(key, w, now)
				queries++
				if got != want {
					over++
				}
				if got < want || (k.exact && got != want) {
					t.Fatalf("event %d: Count(%#x, %v, latest−%v) = %d, reference %d", i, key, w, latest.Sub(now), got, want)
				}
			}
			t.Logf("%d queries, %d above the reference", queries, over)
		})
	}
}

// TestFrequencyConcurrentAdds adds from 8 goroutines to one shared key
// and to a key of each goroutine, while others count, advance and write
// snapshots: then every count is the number added (the sketch: one key
// alone in its counters must lose no increment, whatever the
// interleaving), and never fewer.
func TestFrequencyConcurrentAdds(t *testing.T) {
	const workers, adds = 8, 2000
	for _, k := range freqKinds {
		t.Run(k.name, func(t *testing.T) {
			f := k.make()
			start := freqBase.Add(300 * time.Hour)
			var wg, side sync.WaitGroup
			stop := make(chan struct{})
			side.Add(1)
			go func() { // readers, upkeep and snapshots alongside
				defer side.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					f.Count(fkey(0), time.Hour, start.Add(10*time.Minute))
					f.Advance(start.Add(time.Duration(i%600) * time.Second))
					if i%50 == 0 {
						if _, err := f.WriteTo(discard{}); err != nil {
							t.Error(err)
						}
					}
				}
			}()
			for wk := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range adds {
						at := start.Add(time.Duration(i%600) * time.Second)
						f.Add(fkey(0), at)
						f.Add(fkey(wk+1), at)
					}
				}()
			}
			wg.Wait()
			close(stop)
			side.Wait()
			now := start.Add(10 * time.Minute)
			if got := f.Count(fkey(0), time.Hour, now); got != workers*adds {
				t.Errorf("shared key: got %d, want %d", got, workers*adds)
			}
			for wk := range workers {
				if got := f.Count(fkey(wk+1), time.Hour, now); got < adds || (k.exact && got != adds) {
					t.Errorf("key of worker %d: got %d, want %d", wk, got, adds)
				}
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestFrequencyAdvanceKeepsCounts records answers over random keys,
// windows and nows from a minute before to the latest time, then runs
// Advance at the latest time through every shard and slot: the answers
// are the same. Then it advances a day at a time, each answer checked
// against the reference.
func TestFrequencyAdvanceKeepsCounts(t *testing.T) {
	for _, k := range freqKinds {
		t.Run(k.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(7, 8))
			keys := randomKeys(r, 40)
			f, ref := k.make(), naiveFreq{}
			var latest time.Time
			for _, e := range randomHistory(r, keys, 5000, 180*time.Hour) {
				if !e.advance {
					f.Add(e.key, e.at)
					ref.add(e.key, e.at)
				}
				latest = e.at
			}
			type query struct {
				key uint64
				w   time.Duration
				now time.Time
			}
			qs := make([]query, 3000)
			before := make([]uint64, len(qs))
			for i := range qs {
				qs[i] = query{keys[r.IntN(len(keys))], randomWindow(r), latest.Add(-time.Duration(r.Int64N(int64(time.Minute))))}
				before[i] = f.Count(qs[i].key, qs[i].w, qs[i].now)
			}
			for range 2 * freqShards {
				f.Advance(latest)
			}
			for i, q := range qs {
				if got := f.Count(q.key, q.w, q.now); got != before[i] {
					t.Fatalf("Count(%#x, %v, latest−%v): %d before Advance, %d after", q.key, q.w, latest.Sub(q.now), before[i], got)
				}
			}
			for d := range 8 {
				now := latest.Add(time.Duration(d) * 24 * time.Hour)
				for range 2 * freqShards {
					f.Advance(now)
				}
				for _, key := range keys {
					for _, w := range freqTestWindows {
						if got, want := f.Count(key, w, now), ref.count(key, w, now); got < want || (k.exact && got != want) {
							t.Fatalf("day %d, Count(%#x, %v): got %d, want %d", d, key, w, got, want)
						}
					}
				}
			}
		})
	}
}

// TestFrequencyCountWindows: CountWindows answers what Count answers for
// each window, in both kinds.
func TestFrequencyCountWindows(t *testing.T) {
	base := time.Unix(1_700_000_000, 0)
	ws := []time.Duration{time.Minute, 59 * time.Minute, time.Hour, 24 * time.Hour, 168 * time.Hour}
	for _, f := range []Frequency{NewFrequencyExact(), NewFrequencySketch(1000)} {
		for i := range 500 {
			f.Add(uint64(i%7), base.Add(time.Duration(i)*17*time.Minute))
		}
		now := base.Add(500 * 17 * time.Minute)
		dst := make([]uint64, len(ws))
		for key := range uint64(8) {
			f.CountWindows(key, ws, now, dst)
			for i, w := range ws {
				if want := f.Count(key, w, now); dst[i] != want {
					t.Fatalf("%T key %d window %v: CountWindows %d, Count %d", f, key, w, dst[i], want)
				}
			}
		}
		if f.CountWindows(0, ws, now, dst); dst[len(ws)-1] == 0 {
			t.Fatalf("%T: nothing counted in a week", f)
		}
	}
}
