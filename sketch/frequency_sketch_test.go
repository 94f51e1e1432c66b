package sketch

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// tinySketch is a sketch of 4 blocks a slot at every level: a few dozen
// keys already share counters.
func tinySketch() *FrequencySketch {
	return newFrequencySketch(1, freqParams{depth: 4, blocksPerPair: 0.05})
}

// TestFrequencySketchCountBehindAdvance puts an exposure in the oldest
// slice the longest window of each level reads, then runs Advance and an
// Add one slice of the level later (a Count whose clock lags the ticker's):
// the Count at the earlier now still finds it. With a single spare slot,
// Advance's pre-clearing would have emptied that slice.
func TestFrequencySketchCountBehindAdvance(t *testing.T) {
	for l, w := range []time.Duration{time.Hour - time.Nanosecond, 6*time.Hour - time.Nanosecond, 36*time.Hour - time.Nanosecond, 168 * time.Hour} {
		g := time.Duration(freqSlice[l]) * time.Second
		t.Run(fmt.Sprintf("w=%v", w), func(t *testing.T) {
			f := NewFrequencySketch(1000)
			now := freqBase.Add(1000*time.Hour + g/2)
			_, lo, hi := freqSpan(w, now)
			if hi-lo+1 != freqReads[l] {
				t.Fatalf("window reads %d slices, want the level's most, %d", hi-lo+1, freqReads[l])
			}
			oldest := time.Unix(lo*freqSlice[l], 0)
			f.Add(fkey(1), oldest)
			f.Add(fkey(1), now)
			f.Advance(now.Add(g))
			f.Add(fkey(2), now.Add(g))
			if got := f.Count(fkey(1), w, now); got != 2 {
				t.Fatalf("Count a slice behind Advance: got %d, want 2", got)
			}
		})
	}
}

// TestFrequencySketchAdvancePreclears fills every slot, then checks that
// Advance leaves the slots of now's slice and the next one tagged with
// them and empty, and no other slot touched.
func TestFrequencySketchAdvancePreclears(t *testing.T) {
	f := NewFrequencySketch(1000)
	start := freqBase.Add(500 * time.Hour)
	for i := range 200 * 60 {
		f.Add(fkey(i%7), start.Add(time.Duration(i)*time.Minute))
	}
	now := start.Add(200*60*time.Minute + 3*time.Hour)
	f.Advance(now)
	for l := range f.levels {
		tb := &f.levels[l]
		s := floorDiv(now.Unix(), tb.g)
		for r := range tb.slots {
			tag := tb.tags[r].Load()
			if x := s + mod(int64(r)-s, tb.slots); x == s || x == s+1 {
				if tag != x {
					t.Errorf("level %d slot %d: tag %d, want %d", l, r, tag, x)
				}
				for b := range tb.blocks {
					c := tb.cell(b, int64(r))
					for i := range c {
						if v := c[i].Load(); v != 0 {
							t.Fatalf("level %d slot %d block %d counter %d: %d after pre-clearing, want 0", l, r, b, i, v)
						}
					}
				}
			} else if tag >= s {
				t.Errorf("level %d slot %d: tag %d, a slice not yet reached (now %d)", l, r, tag, s)
			}
		}
	}
}

// TestFrequencySketchDropsStaleExposure adds an exposure older than the
// slice its minute slot holds: the minute level drops it (no minute window
// reads it), the 10-minute level, whose ring reaches it, counts it.
func TestFrequencySketchDropsStaleExposure(t *testing.T) {
	f := NewFrequencySketch(1000)
	now := freqBase.Add(100 * time.Hour)
	f.Add(fkey(1), now)
	late := now.Add(-time.Duration(f.levels[0].slots) * time.Minute) // same minute slot, an older slice
	f.Add(fkey(1), late)
	if got := f.Count(fkey(1), time.Minute, now); got != 1 {
		t.Fatalf("1m window: got %d, want 1 (the late exposure must not enter now's slot)", got)
	}
	if got := f.Count(fkey(1), 2*time.Hour, now); got != 2 {
		t.Fatalf("2h window: got %d, want 2", got)
	}
}

// TestFrequencySketchSaturates sets a key's counters to 2³²−1: Add leaves
// them there instead of wrapping to zero.
func TestFrequencySketchSaturates(t *testing.T) {
	f := NewFrequencySketch(1000)
	key := fkey(3)
	f.Add(key, freqBase)
	tb := &f.levels[0]
	r, _ := tb.slotFor(floorDiv(freqBase.Unix(), tb.g))
	c, pos := tb.cell(tb.block(key), r), f.positions(key)
	for i := range f.params.depth {
		c[pos>>(4*i)&0xf].Store(math.MaxUint32)
	}
	f.Add(key, freqBase)
	if got := f.Count(key, time.Minute, freqBase); got != math.MaxUint32 {
		t.Fatalf("got %d, want %d", got, uint64(math.MaxUint32))
	}
}

// TestFrequencySketchSubsets checks the key's counters are d distinct
// positions of the block, every subset of d once.
func TestFrequencySketchSubsets(t *testing.T) {
	for _, tc := range []struct{ d, n int }{{3, 560}, {4, 1820}} {
		subs := freqSubsets(tc.d)
		if len(subs) != tc.n {
			t.Fatalf("d=%d: %d subsets, want C(16,%d) = %d", tc.d, len(subs), tc.d, tc.n)
		}
		seen := map[uint16]bool{}
		for _, p := range subs {
			mask := uint16(0)
			for i := range tc.d {
				mask |= 1 << (p >> (4 * i) & 0xf)
			}
			if seen[mask] || popcount16(mask) != tc.d {
				t.Fatalf("d=%d: subset %#04x repeated or with repeated positions", tc.d, p)
			}
			seen[mask] = true
		}
	}
	// Low 32 bits pick the subset uniformly: each of 1820 taken about
	// equally by 182,000 keys.
	f := NewFrequencySketch(1)
	hits := map[uint16]int{}
	for i := range 182000 {
		hits[f.positions(fkey(i))]++
	}
	for p, n := range hits {
		if n < 50 || n > 160 {
			t.Fatalf("subset %#04x taken by %d of 182,000 keys, want about 100", p, n)
		}
	}
}

func popcount16(x uint16) int {
	n := 0
	for ; x != 0; x &= x - 1 {
		n++
	}
	return n
}

// TestFrequencySketchSizing checks the tables of each level against the
// formula of NewFrequencySketch's doc, and that Bytes is what was
// allocated, for the capacities the doc quotes.
func TestFrequencySketchSizing(t *testing.T) {
	for _, tc := range []struct {
		capacity int
		blocks   [freqLevels]uint64
		bytes    int64
	}{
		// max(64, capacity·g/24h) pairs, 6 blocks each.
		{1, [freqLevels]uint64{384, 384, 384, 384}, 384 * 64 * (63 + 39 + 39 + 31)},
		{100_000, [freqLevels]uint64{70 * 6, 695 * 6, 4167 * 6, 25000 * 6}, 372_106_752},
		{1_000_000, [freqLevels]uint64{695 * 6, 6945 * 6, 41667 * 6, 250000 * 6}, 3_720_826_752},
	} {
		for l, g := range freqSlice {
			if got := freqBlocks(tc.capacity, g, freqDefaults.blocksPerPair); got != tc.blocks[l] {
				t.Errorf("capacity %d level %d: %d blocks, want %d", tc.capacity, l, got, tc.blocks[l])
			}
		}
		tags := int64(8 * (63 + 39 + 39 + 31))
		if got := freqSketchBytes(tc.capacity, freqDefaults); got != tc.bytes+tags {
			t.Errorf("capacity %d: %d bytes, want %d", tc.capacity, got, tc.bytes+tags)
		}
	}
	f := NewFrequencySketch(5000)
	var held int64
	for l := range f.levels {
		held += 4*int64(len(f.levels[l].counters)) + 8*int64(len(f.levels[l].tags))
	}
	if f.Bytes() != held {
		t.Fatalf("Bytes %d, allocated %d", f.Bytes(), held)
	}
	if f := NewFrequencySketch(-5); f.Capacity() != 1 {
		t.Fatalf("capacity -5 taken as %d, want 1", f.Capacity())
	}
}

// TestFrequencySketchConcurrentSharedCounters adds thousands of keys from
// four goroutines into a sketch of 4 blocks a slot, where every block is
// shared by hundreds of keys: no key may count below its exposures.
// Conservative update with bare atomics would lose increments here.
func TestFrequencySketchConcurrentSharedCounters(t *testing.T) {
	const workers, keys, adds = 4, 500, 3
	f := tinySketch()
	var wg sync.WaitGroup
	for wk := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range adds {
				for k := range keys {
					f.Add(fkey(wk*keys+k), freqBase.Add(time.Duration(a*keys+k)*time.Millisecond))
				}
			}
		}()
	}
	wg.Wait()
	for k := range workers * keys {
		if got := f.Count(fkey(k), time.Minute, freqBase.Add(time.Minute)); got < adds {
			t.Fatalf("key %d: got %d, want at least %d", k, got, adds)
		}
	}
}

// TestFrequencySketchTiledReadIsExact: a key alone in a sketch shares no
// counter, so every slot's estimate is its true count, and Count, which
// tiles a window's span with coarser slices where they fit, must equal the
// reference for every window: a tile missed or read twice would show.
// The windows include ones whose spans hold several whole slices of each
// coarser level and ones that hold none.
func TestFrequencySketchTiledReadIsExact(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	key := fkey(3)
	f, ref := NewFrequencySketch(1000), naiveFreq{}
	var latest time.Time
	queries, tiled := 0, 0
	for i, e := range randomHistory(r, []uint64{key}, 8000, 240*time.Hour) {
		latest = e.at
		if e.advance {
			f.Advance(e.at)
			continue
		}
		f.Add(e.key, e.at)
		ref.add(e.key, e.at)
		if i%3 != 0 {
			continue
		}
		w := randomWindow(r)
		now := latest.Add(-time.Duration(r.Int64N(int64(time.Minute))))
		if got, want := f.Count(key, w, now), ref.count(key, w, now); got != want {
			t.Fatalf("event %d: Count(%v, latest−%v) = %d, reference %d", i, w, latest.Sub(now), got, want)
		}
		queries++
		if l, lo, hi := freqSpan(w, now); l+1 < freqLevels && hi-lo+1 >= 2*freqSlice[l+1]/freqSlice[l] {
			tiled++ // the span surely holds a whole coarser slice
		}
	}
	if tiled < queries/4 {
		t.Fatalf("only %d of %d queries read coarser slices", tiled, queries)
	}
	t.Logf("%d queries, %d of them tiled", queries, tiled)
}
