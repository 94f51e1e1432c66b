package sketch

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"
)

// sortedExposures is a reference for one key: every exposure time, sorted,
// counted by binary search. An exposure is counted iff it lies in
// [start of now−w's slice, end of now's slice).
type sortedExposures []time.Time

func (s sortedExposures) count(w time.Duration, now time.Time) uint64 {
	w = min(max(w, MinFrequencyWindow), MaxFrequencyWindow)
	g := FrequencySlice(w)
	from, to := now.Add(-w).Truncate(g), now.Truncate(g).Add(g)
	lo := sort.Search(len(s), func(i int) bool { return !s[i].Before(from) })
	hi := sort.Search(len(s), func(i int) bool { return !s[i].Before(to) })
	return uint64(hi - lo)
}

func (x *FrequencyExact) cellsOf(key uint64) []freqCell {
	s := &x.shards[key%freqShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.pairs[key])
}

// edgeWindows are windows at the edges of each level: the longest of a
// level reads the most slices, back to the first its merging spares.
var edgeWindows = []time.Duration{
	time.Minute, 6 * time.Minute, time.Hour - time.Nanosecond, time.Hour - time.Second,
	time.Hour, 6*time.Hour - time.Nanosecond, 6*time.Hour - 17*time.Second,
	6 * time.Hour, 36*time.Hour - time.Nanosecond, 36*time.Hour - 3*time.Minute,
	36 * time.Hour, 168*time.Hour - time.Nanosecond, 168 * time.Hour,
}

// TestFrequencyExactMergingIsLossless exposes one key densely (every few
// seconds to minutes, with late arrivals up to three hours old) for nine
// days, so that its cells merge into every level and drop, with Advance
// sweeping its shard now and then. After each exposure it counts the edge
// windows of every level, and random ones, at the latest time and up to a
// minute before it: every answer equals the reference's.
func TestFrequencyExactMergingIsLossless(t *testing.T) {
	if testing.Short() {
		t.Skip("nine simulated days of exposures")
	}
	x := NewFrequencyExact()
	r := rand.New(rand.NewPCG(9, 10))
	key := fkey(1)
	var ref sortedExposures
	var levels [freqLevels]int
	latest := freqBase.Add(-time.Duration(r.Int64N(int64(6 * time.Hour))))
	end := latest.Add(9 * 24 * time.Hour)
	for i := 0; latest.Before(end); i++ {
		at := latest
		if r.IntN(20) == 0 {
			at = latest.Add(-time.Duration(r.Int64N(int64(3 * time.Hour))))
		} else {
			latest = latest.Add(time.Duration(r.Int64N(int64(4 * time.Minute))))
			at = latest
		}
		x.Add(key, at)
		ref = append(ref, at)
		slices.SortFunc(ref[len(ref)-1-min(len(ref)-1, 200):], func(a, b time.Time) int { return a.Compare(b) })
		if r.IntN(50) == 0 {
			for range freqShards {
				x.Advance(latest)
			}
		}
		for _, c := range x.cellsOf(key) {
			levels[c.level()]++
		}
		for _, back := range []time.Duration{0, time.Minute, time.Duration(r.Int64N(int64(time.Minute)))} {
			now := latest.Add(-back)
			ws := append(edgeWindows[:len(edgeWindows):len(edgeWindows)], randomWindow(r))
			for _, w := range ws {
				if got, want := x.Count(key, w, now), ref.count(w, now); got != want {
					t.Fatalf("exposure %d: Count(w=%v, now=latest−%v) = %d, want %d; cells %v", i, w, back, got, want, x.cellsOf(key))
				}
			}
		}
	}
	for l, n := range levels {
		if n == 0 {
			t.Errorf("no cell of level %d seen: merging into it untested", l)
		}
	}
}

// TestFrequencyExactCellBound exposes a pair every 20 seconds (every
// minute has a cell) for nine days, in time order and then against it:
// it holds at most freqMaxCells cells, and exactly that many at some
// point. The horizons repeat every 6 hours, so the nine days try every
// alignment of the latest minute.
func TestFrequencyExactCellBound(t *testing.T) {
	for _, tc := range []struct {
		name string
		step time.Duration
	}{{"forwards", 20 * time.Second}, {"backwards", -20 * time.Second}} {
		t.Run(tc.name, func(t *testing.T) {
			x := NewFrequencyExact()
			most := 0
			for i := range 9 * 24 * 180 {
				x.Add(1, freqBase.Add(time.Duration(i)*tc.step+7*time.Second))
				most = max(most, len(x.cellsOf(1)))
			}
			if most > freqMaxCells {
				t.Fatalf("a pair held %d cells, more than freqMaxCells = %d", most, freqMaxCells)
			}
			if most < freqMaxCells {
				t.Fatalf("a pair held at most %d cells, under freqMaxCells = %d: is the bound stale?", most, freqMaxCells)
			}
			t.Logf("most cells held: %d (bound %d)", most, freqMaxCells)
		})
	}
}

// TestFrequencyExactDropsUnreadable checks an exposure is dropped once no
// window can read it: 168 hours and the 6-hour slice before, plus the one
// slice of margin.
func TestFrequencyExactDropsUnreadable(t *testing.T) {
	x := NewFrequencyExact()
	x.Add(1, freqBase)
	x.Add(1, freqBase.Add(175*time.Hour))
	if n := len(x.cellsOf(1)); n != 2 {
		t.Fatalf("175 hours on: %d cells, want 2 (a 168-hour window at a minute before reads back to 174h)", n)
	}
	x.Add(1, freqBase.Add(181*time.Hour))
	if cells := x.cellsOf(1); len(cells) != 2 || cells[0].startSec() == freqBase.Unix() {
		t.Fatalf("181 hours on: cells %v, want the first dropped", cells)
	}
	if got := x.Count(1, MaxFrequencyWindow, freqBase.Add(181*time.Hour)); got != 2 {
		t.Fatalf("Count of 168h after dropping: got %d, want 2", got)
	}
}

// TestFrequencyExactAdvanceFreesIdlePairs adds 20,000 pairs, then advances
// past their last window through every shard: no pair is left and Bytes
// falls back to an empty counter's, the maps rebuilt small.
func TestFrequencyExactAdvanceFreesIdlePairs(t *testing.T) {
	x := NewFrequencyExact()
	empty := x.Bytes()
	for i := range 20000 {
		x.Add(fkey(i), freqBase.Add(time.Duration(i)*time.Second))
		x.Add(fkey(i), freqBase.Add(time.Duration(i)*time.Second+3*time.Minute))
	}
	full := x.Bytes()
	if full < empty+20000*16 {
		t.Fatalf("Bytes %d with 20,000 pairs, %d empty: under 16 bytes a pair", full, empty)
	}
	later := freqBase.Add(190 * time.Hour)
	for range freqShards - 1 {
		x.Advance(later)
	}
	if x.Pairs() == 0 {
		t.Fatal("Advance swept every shard in freqShards−1 calls, want one a call")
	}
	x.Advance(later)
	if n := x.Pairs(); n != 0 {
		t.Fatalf("%d pairs left after a full sweep past their windows, want 0", n)
	}
	if got := x.Bytes(); got != empty {
		t.Fatalf("Bytes after freeing: %d, want the empty counter's %d (full: %d)", got, empty, full)
	}
}

// TestFrequencyExactCollidingKeys documents that pairs are their keys:
// two pairs with one key are counted together.
func TestFrequencyExactCollidingKeys(t *testing.T) {
	x := NewFrequencyExact()
	x.Add(42, freqBase) // pair A
	x.Add(42, freqBase) // pair B, whose key collides with A's
	if got := x.Count(42, time.Hour, freqBase); got != 2 {
		t.Fatalf("got %d, want 2", got)
	}
}

// TestFrequencyExactTimeRange checks exposures outside 32-bit minutes are
// ignored, and those at the edges kept.
func TestFrequencyExactTimeRange(t *testing.T) {
	x := NewFrequencyExact()
	for _, tc := range []struct {
		minute int64
		kept   bool
	}{{math.MaxInt32, true}, {math.MaxInt32 + 1, false}, {math.MinInt32, true}, {math.MinInt32 - 1, false}} {
		at := time.Unix(tc.minute*60+59, 0)
		x.Add(7, at)
		if got := x.Count(7, time.Minute, at); (got == 1) != tc.kept {
			t.Errorf("minute %d: Count %d, kept %v", tc.minute, got, tc.kept)
		}
		x = NewFrequencyExact()
	}
}

// TestFrequencyExactCellSaturates checks a cell stops at 2³⁰−1 instead of
// wrapping into its level bits.
func TestFrequencyExactCellSaturates(t *testing.T) {
	c := newFreqCell(10, 0, freqMaxCount-1)
	if c = c.plus(1).plus(1); c.count() != freqMaxCount || c.level() != 0 {
		t.Fatalf("got count %d level %d, want %d and 0", c.count(), c.level(), freqMaxCount)
	}
	if c = newFreqCell(0, 3, freqMaxCount).plus(freqMaxCount); c.count() != freqMaxCount || c.level() != 3 {
		t.Fatalf("got count %d level %d, want %d and 3", c.count(), c.level(), freqMaxCount)
	}
}
