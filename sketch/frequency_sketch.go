package sketch

import (
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// FrequencySketch is the fixed-memory frequency counter: per slice level
// (1m, 10m, 1h, 6h) a ring of slots, one per slice, each a blocked
// count-min table with conservative update. Count is never below the
// number FrequencyExact would answer (see Frequency for the span read),
// for a now at most a minute behind the latest Add or Advance; it may be
// above it when other pairs share the key's counters. It is safe for
// concurrent use.
//
// A level with slice g has freqReads+2 slots: the most a window of the
// level reads, one that Advance pre-clears for the next slice, and one so
// that a Count up to a minute behind Advance still finds its oldest slice
// intact (63, 39, 39 and 31). Each slot is tagged with the slice it holds;
// a slot tagged otherwise counts zero for the slice asked. The first
// writer of a newer slice (or Advance, ahead of it) clears the slot and
// retags it; an exposure older than the slot's slice has left every window
// of the level and is dropped there.
//
// A key maps to one 64-byte block of 16 uint32 counters, the same in every
// slot of a level (the blocks of one index in all slots are adjacent, so a
// run of a level's slots is one contiguous read), and to d distinct
// counters in it. Add raises those of the key's counters that equal their
// minimum by one (saturating at 2³²−1), under a lock chosen by block, so
// that every counter of a key stays at least its count; Count sums, over
// the slices read, the minimum of the key's counters in each slot, with
// atomic loads and no lock.
type FrequencySketch struct {
	capacity int
	params   freqParams
	levels   [freqLevels]freqTable
	// subsets are the C(16, d) sets of d distinct counters of a block,
	// each packed as 4-bit positions; a key takes one by its low bits.
	subsets []uint16
}

// freqParams are the sketch's tunables; NewFrequencySketch uses
// freqDefaults, tests smaller tables.
type freqParams struct {
	depth         int     // counters per key in its block, d
	blocksPerPair float64 // blocks per pair of a slot's design load
}

// freqDefaults are chosen by TestFrequencySketchError: see
// NewFrequencySketch.
var freqDefaults = freqParams{depth: 4, blocksPerPair: 6}

const (
	freqBlockCounters = 16 // uint32 counters in a 64-byte block
	freqMinPairs      = 64 // the least design load of a slot
	freqStripes       = 64 // writer locks per level
	freqNoSlice       = math.MinInt64
)

// freqTable is one level: its slots' counters and tags.
type freqTable struct {
	g      int64 // slice, in seconds
	slots  int64 // slots in the ring
	blocks uint64
	// counters holds block b of slot r at (b·slots + r)·freqBlockCounters.
	counters []atomic.Uint32
	tags     []atomic.Int64 // the slice each slot holds, or freqNoSlice
	mu       sync.Mutex     // serialises clearing and retagging slots
	stripes  [freqStripes]struct {
		sync.Mutex // guards the conservative updates of blocks ≡ index
		_          [56]byte
	}
}

// NewFrequencySketch returns a sketch sized for capacity distinct pairs
// exposed per day (at least 1), allocating all its memory at once.
//
// The slots of the level with slice g are sized for max(64,
// capacity·g/24h) pairs, 6 blocks per pair (a key takes d = 4 of its
// block's 16 counters), so Bytes is about 3,721 bytes per pair of
// capacity:
//
//	64 B · 6 · capacity · (63/1440 + 39/144 + 39/24 + 31/4)
//
// 372 MB for 100,000 pairs a day, 3.72 GB for 1,000,000. The sizing
// assumes each pair's exposures of a day fall in one slice per level; a
// pair exposed in k slices of a level weighs k pairs there, so traffic
// spread over the day needs a larger capacity for the same error.
//
// Measured at capacity 1,000,000 over a simulated week, each pair of a day
// exposed 1 to 5 times (sampled pairs with at least one exposure in the
// window; share overestimated, mean and largest overestimate), with
// Count's tiled read (see Count):
//
//	window  all in one minute of its day    spread over its day
//	1h      0.078%, mean 0.0018, max 5      0.428%, mean 0.0043, max 2
//	24h     0.177%, mean 0.0042, max 5      0.642%, mean 0.0085, max 5
//	168h    1.078%, mean 0.0256, max 7      3.020%, mean 0.0524, max 9
//
// Keys never added count above zero as often: 0.076%, 0.190% and 1.103%
// (one minute). The 168h window, read in 6h slots with no coarser level to
// tile them, sets the sizing: at 100,000 pairs a day (the same load per
// block) 6 blocks a pair is the fewest that keeps it near 1% (4 blocks:
// 2.30%, 5: 1.53%, 6: 1.08%, 8: 0.66%), and d = 4 beats d = 3 at every
// size (24h windows at 6 blocks a pair: 0.185% against 0.285%).
// FrequencyExact holds the same two weeks in 417 MB and 567 MB (60 and 81
// bytes for each of the 7 million pairs): what the sketch offers is memory
// fixed whatever the number of pairs, not less of it at its capacity.
// Reproduce with
//
//	IMPRESSIOND_TEST_FREQ_ERROR=1 go test -run 'TestFrequencySketchError$' -v -timeout 1h ./sketch
func NewFrequencySketch(capacity int) *FrequencySketch {
	return newFrequencySketch(capacity, freqDefaults)
}

func newFrequencySketch(capacity int, p freqParams) *FrequencySketch {
	capacity = max(capacity, 1)
	f := &FrequencySketch{capacity: capacity, params: p, subsets: freqSubsetsOf[p.depth]}
	for l := range f.levels {
		t := &f.levels[l]
		t.g = freqSlice[l]
		t.slots = freqReads[l] + 2
		t.blocks = freqBlocks(capacity, t.g, p.blocksPerPair)
		t.counters = make([]atomic.Uint32, t.blocks*uint64(t.slots)*freqBlockCounters)
		adviseHugePages(t.counters)
		t.tags = make([]atomic.Int64, t.slots)
		for i := range t.tags {
			t.tags[i].Store(freqNoSlice)
		}
	}
	return f
}

// freqBlocks returns the blocks of a slot of slice g seconds.
func freqBlocks(capacity int, g int64, blocksPerPair float64) uint64 {
	pairs := max(freqMinPairs, math.Ceil(float64(capacity)*float64(g)/86400))
	return uint64(max(1, math.Ceil(pairs*blocksPerPair)))
}

// freqSubsetsOf holds freqSubsets(d) for the depths the sketch supports.
var freqSubsetsOf = map[int][]uint16{3: freqSubsets(3), 4: freqSubsets(4)}

// freqSubsets lists the subsets of d of a block's counters, in increasing
// order of their bit masks, each as d 4-bit positions.
func freqSubsets(d int) []uint16 {
	var out []uint16
	// Gosper's hack: the next mask with as many bits set.
	for m := uint32(1)<<d - 1; m < 1<<freqBlockCounters; {
		var packed uint16
		for i, x := 0, m; x != 0; i, x = i+1, x&(x-1) {
			packed |= uint16(bits.TrailingZeros32(x)) << (4 * i)
		}
		out = append(out, packed)
		c := m & -m
		r := m + c
		m = (r^m)>>2/c | r
	}
	return out
}

// positions returns the key's set of counters, chosen by multiply-shift
// of its low 32 bits; the block comes from the high bits.
func (f *FrequencySketch) positions(key uint64) uint16 {
	return f.subsets[uint64(uint32(key))*uint64(len(f.subsets))>>32]
}

// block returns the index of key's block: multiply-shift of the whole key,
// which its high bits decide.
func (t *freqTable) block(key uint64) uint64 {
	b, _ := bits.Mul64(key, t.blocks)
	return b
}

// Add implements Frequency. It allocates nothing. It first reads one
// counter of the key's block at every level, loads that do not wait on
// each other, so the four cache misses overlap instead of each waiting
// behind the locked updates of the level before.
func (f *FrequencySketch) Add(key uint64, at time.Time) {
	sec, pos := at.Unix(), f.positions(key)
	var cells [freqLevels][]atomic.Uint32
	var warm uint32
	for l := range f.levels {
		t := &f.levels[l]
		if r, ok := t.slotFor(floorDiv(sec, t.g)); ok {
			cells[l] = t.cell(t.block(key), r)
			warm += cells[l][pos&0xf].Load()
		}
	}
	_ = warm
	for l := range f.levels {
		if cells[l] == nil {
			continue
		}
		t := &f.levels[l]
		mu := &t.stripes[t.block(key)%freqStripes]
		mu.Lock()
		t.raise(cells[l], pos, f.params.depth)
		mu.Unlock()
	}
}

// cell returns the counters of block b in slot r.
func (t *freqTable) cell(b uint64, r int64) []atomic.Uint32 {
	i := (b*uint64(t.slots) + uint64(r)) * freqBlockCounters
	return t.counters[i : i+freqBlockCounters : i+freqBlockCounters]
}

// raise is the conservative update: the key's d counters in c that equal
// their minimum go up by one, unless it is 2³²−1. The caller holds the
// block's stripe, so no other update of c interleaves and every counter of
// the key stays at least the exposures added with it.
func (t *freqTable) raise(c []atomic.Uint32, pos uint16, d int) {
	m := freqMin(c, pos, d)
	if m == math.MaxUint32 {
		return
	}
	for i := range d {
		x := &c[pos>>(4*i)&0xf]
		if x.Load() == m {
			x.Store(m + 1)
		}
	}
}

// freqMin returns the least of the key's d counters in c.
func freqMin(c []atomic.Uint32, pos uint16, d int) uint32 {
	m := uint32(math.MaxUint32)
	for i := range d {
		m = min(m, c[pos>>(4*i)&0xf].Load())
	}
	return m
}

// slotFor returns the slot of slice s for a writer, first retagging it if
// it holds an older slice, and false if it holds a newer one: s has left
// every window of the level.
func (t *freqTable) slotFor(s int64) (int64, bool) {
	r := mod(s, t.slots)
	if tag := t.tags[r].Load(); tag != s {
		if tag > s {
			return r, false
		}
		t.retag(r, s)
	}
	return r, t.tags[r].Load() == s
}

// retag makes slot r hold slice s, if it holds an older one: its counters
// are cleared, then its tag set, so a writer that finds the tag s writes
// after the clear. A writer still adding to the old slice may leave a
// count in the new one: an answer over the truth, never under. A slot
// that never held a slice is already clear.
func (t *freqTable) retag(r, s int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.tags[r].Load()
	if old >= s {
		return
	}
	if old != freqNoSlice {
		for b := range t.blocks {
			c := t.cell(b, r)
			for i := range c {
				if c[i].Load() != 0 {
					c[i].Store(0)
				}
			}
		}
	}
	t.tags[r].Store(s)
}

// Count implements Frequency. It allocates nothing and takes no lock.
//
// The span of w's level is read in the coarsest slices that tile it: the
// slices of a coarser level that lie wholly inside it, and the level's own
// at its two ends. Every exposure is added at every level, so a coarse slot
// holds at least the exposures of the fine slices it is the union of, and
// the sum is never below the fine one's truth. A 24h window thus reads at
// most 13 slots (5 of 1h, 3 of 6h, 5 of 1h) instead of 25: a check of many
// candidates is bound by the memory it reads.
func (f *FrequencySketch) Count(key uint64, w time.Duration, now time.Time) uint64 {
	level, lo, hi := freqSpan(w, now)
	return f.countSpan(key, f.positions(key), level, lo, hi)
}

// countSpan sums the key's estimates over slices lo to hi of level l,
// reading whole slices of level l+1 (and up) where they fit.
func (f *FrequencySketch) countSpan(key uint64, pos uint16, l int, lo, hi int64) uint64 {
	if lo > hi {
		return 0
	}
	if l+1 < freqLevels {
		k := freqSlice[l+1] / freqSlice[l]
		clo, chi := floorDiv(lo+k-1, k), floorDiv(hi+1, k)-1
		if clo <= chi {
			return f.readSpan(key, pos, l, lo, clo*k-1) +
				f.countSpan(key, pos, l+1, clo, chi) +
				f.readSpan(key, pos, l, (chi+1)*k, hi)
		}
	}
	return f.readSpan(key, pos, l, lo, hi)
}

// readSpan sums the key's estimates in the slots of slices lo to hi of
// level l; a slot tagged with another slice counts zero.
func (f *FrequencySketch) readSpan(key uint64, pos uint16, l int, lo, hi int64) uint64 {
	t := &f.levels[l]
	b, d := t.block(key), f.params.depth
	var n uint64
	for s, r := lo, mod(lo, t.slots); s <= hi; s++ {
		if t.tags[r].Load() == s {
			n += uint64(freqMin(t.cell(b, r), pos, d))
		}
		if r++; r == t.slots {
			r = 0
		}
	}
	return n
}

// Prefetch implements Frequency: one load of each key's block in now's
// slot at every level, in a loop whose loads do not depend on each other,
// so the processor keeps many in flight.
func (f *FrequencySketch) Prefetch(keys []uint64, now time.Time) {
	sec := now.Unix()
	var warm uint32
	for l := range f.levels {
		t := &f.levels[l]
		r := mod(floorDiv(sec, t.g), t.slots)
		for _, k := range keys {
			warm += t.counters[(t.block(k)*uint64(t.slots)+uint64(r))*freqBlockCounters].Load()
		}
	}
	_ = warm
}

// CountWindows implements Frequency.
func (f *FrequencySketch) CountWindows(key uint64, ws []time.Duration, now time.Time, dst []uint64) {
	for i, w := range ws {
		dst[i] = f.Count(key, w, now)
	}
}

// Advance implements Frequency: at every level, a slot holding an older
// slice than now's, or than the next one, is cleared and retagged, so that
// writers rarely clear. The slot of the next slice holds one older than
// any a Count at now or a minute before reads.
func (f *FrequencySketch) Advance(now time.Time) {
	sec := now.Unix()
	for l := range f.levels {
		t := &f.levels[l]
		s := floorDiv(sec, t.g)
		for _, x := range [2]int64{s, s + 1} {
			if r := mod(x, t.slots); t.tags[r].Load() < x {
				t.retag(r, x)
			}
		}
	}
}

// Bytes implements Frequency: the counters and tags, fixed at
// construction.
func (f *FrequencySketch) Bytes() int64 { return freqSketchBytes(f.capacity, f.params) }

// freqSketchBytes is the memory of a sketch's counters and tags.
func freqSketchBytes(capacity int, p freqParams) int64 {
	var n int64
	for l, g := range freqSlice {
		slots := freqReads[l] + 2
		n += int64(freqBlocks(max(capacity, 1), g, p.blocksPerPair))*slots*freqBlockCounters*int64(unsafe.Sizeof(atomic.Uint32{})) +
			slots*int64(unsafe.Sizeof(atomic.Int64{}))
	}
	return n
}

// Capacity returns the distinct pairs per day the sketch was sized for.
func (f *FrequencySketch) Capacity() int { return f.capacity }
