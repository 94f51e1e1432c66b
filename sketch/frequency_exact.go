package sketch

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// FrequencyExact counts every pair's exposures exactly: Count is the
// number of exposures in the slices it reads (see Frequency), no more, no
// less, for a now at most a minute behind the latest Add or Advance.
//
// Pairs are told apart by their 64-bit key alone: two pairs whose keys
// collide are counted as one. With keyed 64-bit hashes (the service passes
// Key.Lo), n pairs collide somewhere with probability about n²/2⁶⁵: 3·10⁻⁶
// for 10 million pairs.
//
// Each pair holds a sorted list of cells, one per aligned slice with
// exposures, each a start and a count (8 bytes). Cells no window reads at
// their own granularity any more are merged into the aligned cell of the
// next: minute cells more than about an hour old into 10-minute cells,
// those more than about 6 hours old into hourly cells, those more than
// about 36 hours old into 6-hour cells. A window reads every slice at its
// own granularity or coarser, and the granularities nest and are aligned
// to the epoch, so merging never changes an answer. Cells no window reads
// at all (174 hours old) are dropped, and a pair left without cells is
// freed. A pair thus holds at most 163 cells (1,304 bytes) however often it
// is exposed, and one exposed a few times a week a few cells; memory
// follows the pairs with exposures in the last 174 hours.
//
// A cell counts up to 2³⁰−1 exposures (of one pair in one slice) and
// saturates there. Times must fall in years −2113 to 6053 (minute numbers
// of 32 bits); Add ignores exposures outside.
//
// The pairs are spread over 64 shards by key, each with its own mutex.
// Add merges and drops a pair's cells as it adds a cell; Advance sweeps
// one shard a call, so that pairs no longer exposed are freed too. It is
// safe for concurrent use.
type FrequencyExact struct {
	shards [freqShards]freqShard
	// latest is the newest Unix second passed to Advance: Add merges
	// cells as of it, even when adding an older exposure.
	latest atomic.Int64
	sweep  atomic.Uint64 // the next shard Advance sweeps, modulo freqShards
}

const freqShards = 64

type freqShard struct {
	mu    sync.Mutex // guards pairs, peak and cells
	pairs map[uint64][]freqCell
	// peak is the most pairs the map has held since it was made: Go maps
	// never shrink, so it sizes the map's tables.
	peak  int
	cells int64 // estimated heap of the pairs' cell slices
	_     [64]byte
}

// freqCell counts one pair's exposures in one aligned slice: its start in
// minutes since the Unix epoch, and the slice's level (index in freqSlice)
// in the top 2 bits of n above the count.
type freqCell struct {
	start int32
	n     uint32
}

const (
	freqCountBits = 30
	freqMaxCount  = 1<<freqCountBits - 1
)

func newFreqCell(start int64, level int, count uint32) freqCell {
	return freqCell{start: int32(start), n: uint32(level)<<freqCountBits | count}
}

func (c freqCell) level() int      { return int(c.n >> freqCountBits) }
func (c freqCell) count() uint32   { return c.n & freqMaxCount }
func (c freqCell) startSec() int64 { return int64(c.start) * 60 }
func (c freqCell) endSec() int64   { return c.startSec() + freqSlice[c.level()] }

// plus returns c with k more exposures, saturating at freqMaxCount.
func (c freqCell) plus(k uint32) freqCell {
	return newFreqCell(int64(c.start), c.level(), uint32(min(uint64(c.count())+uint64(k), freqMaxCount)))
}

// NewFrequencyExact returns an empty exact counter.
func NewFrequencyExact() *FrequencyExact {
	x := &FrequencyExact{}
	x.latest.Store(math.MinInt64)
	for i := range x.shards {
		x.shards[i].pairs = make(map[uint64][]freqCell)
	}
	return x
}

// Add implements Frequency. For a pair already holding a cell for at's
// minute it allocates nothing; otherwise it adds a cell, merging and
// dropping the pair's old cells as of at or the last Advance, whichever
// is later.
func (x *FrequencyExact) Add(key uint64, at time.Time) {
	sec := at.Unix()
	m := floorDiv(sec, 60)
	if m < math.MinInt32 || m > math.MaxInt32 {
		return
	}
	s := &x.shards[key%freqShards]
	s.mu.Lock()
	cells := s.pairs[key]
	if n := len(cells); n > 0 && cells[n-1].start == int32(m) && cells[n-1].level() == 0 {
		cells[n-1] = cells[n-1].plus(1)
	} else {
		s.addLocked(key, cells, m, max(sec, x.latest.Load()))
	}
	s.mu.Unlock()
}

// addLocked counts an exposure in minute m into the pair's cells: in the
// cell covering m if there is one, else in a new minute cell. It then
// merges and drops the cells as of Unix second t, or the start of the
// pair's newest cell if later.
func (s *freqShard) addLocked(key uint64, cells []freqCell, m int64, t int64) {
	oldCap := cap(cells)
	i := len(cells)
	for i > 0 && int64(cells[i-1].start) > m {
		i--
	}
	if i > 0 && cells[i-1].endSec() > m*60 {
		cells[i-1] = cells[i-1].plus(1)
	} else {
		cells = slices.Insert(cells, i, newFreqCell(m, 0, 1))
	}
	s.storeLocked(key, freqCompact(cells, freqNewest(cells, t)), oldCap)
}

// freqNewest is the later of t and the start of the pair's newest cell,
// in Unix seconds: merging as of it keeps every cell within freqMaxCells,
// even when times run backwards, and it is no later than an Add's time.
func freqNewest(cells []freqCell, t int64) int64 {
	if len(cells) == 0 {
		return t
	}
	return max(t, cells[len(cells)-1].startSec())
}

// storeLocked stores the pair's cells after a change, freeing the pair if
// none are left and reallocating the list if it uses under a quarter of
// its capacity; oldCap is the capacity it had when the shard last
// accounted for it.
func (s *freqShard) storeLocked(key uint64, cells []freqCell, oldCap int) {
	if len(cells) == 0 {
		if oldCap > 0 {
			delete(s.pairs, key)
		}
		s.cells -= freqCellsBytes(oldCap)
		return
	}
	if cap(cells) > 4 && len(cells) < cap(cells)/4 {
		cells = slices.Clone(cells)
	}
	s.pairs[key] = cells
	s.peak = max(s.peak, len(s.pairs))
	s.cells += freqCellsBytes(cap(cells)) - freqCellsBytes(oldCap)
}

// freqCompact merges and drops cells as of Unix second t, in place, and
// returns the cells kept. A cell may take the level L > 0 once its L-slice
// lies wholly before every slice a window of level L−1 reads at a now
// from a minute before t on, and is dropped once its 6-hour slice lies
// before every slice a window of the coarsest level reads then. Cells of
// one coarse slice are adjacent, so merging sums neighbours.
func freqCompact(cells []freqCell, t int64) []freqCell {
	var horizon [freqLevels + 1]int64 // horizon[freqLevels]: the drop horizon
	for l := 1; l <= freqLevels; l++ {
		g := freqSlice[l-1]
		// Windows of level l−1 at a now in t's slice or the one before read
		// slices from floorDiv(t, g)−freqReads on.
		horizon[l] = (floorDiv(t, g) - freqReads[l-1]) * g
	}
	out := cells[:0]
	for _, c := range cells {
		l := c.level()
		if freqBlockEnd(c, freqLevels-1) <= horizon[freqLevels] {
			continue
		}
		for l+1 < freqLevels && freqBlockEnd(c, l+1) <= horizon[l+1] {
			l++
		}
		if l != c.level() {
			gm := freqSlice[l] / 60
			c = newFreqCell(floorDiv(int64(c.start), gm)*gm, l, c.count())
		}
		if n := len(out); n > 0 && out[n-1].start == c.start && out[n-1].level() == l {
			out[n-1] = out[n-1].plus(c.count())
			continue
		}
		out = append(out, c)
	}
	return out
}

// freqBlockEnd returns the end, in Unix seconds, of the slice of level l
// holding cell c.
func freqBlockEnd(c freqCell, l int) int64 {
	g := freqSlice[l]
	return (floorDiv(c.startSec(), g) + 1) * g
}

// Count implements Frequency. It reads the pair's cells from the newest
// back to the first before the window, and allocates nothing.
func (x *FrequencyExact) Count(key uint64, w time.Duration, now time.Time) uint64 {
	s := &x.shards[key%freqShards]
	s.mu.Lock()
	n := freqCountCells(s.pairs[key], w, now)
	s.mu.Unlock()
	return n
}

// Prefetch implements Frequency and does nothing: finding a pair is a map
// lookup, the very work CountWindows would then repeat.
func (x *FrequencyExact) Prefetch([]uint64, time.Time) {}

// CountWindows implements Frequency: one lookup of the pair for all
// windows.
func (x *FrequencyExact) CountWindows(key uint64, ws []time.Duration, now time.Time, dst []uint64) {
	s := &x.shards[key%freqShards]
	s.mu.Lock()
	cells := s.pairs[key]
	for i, w := range ws {
		dst[i] = freqCountCells(cells, w, now)
	}
	s.mu.Unlock()
}

// freqCountCells counts a pair's cells in the span Count reads for w.
func freqCountCells(cells []freqCell, w time.Duration, now time.Time) uint64 {
	level, lo, hi := freqSpan(w, now)
	g := freqSlice[level]
	var n uint64
	for i := len(cells) - 1; i >= 0; i-- {
		c := cells[i]
		if floorDiv(c.endSec()-1, g) < lo {
			break
		}
		// A cell coarser than the window's slices (none within its span,
		// while now is at most a minute behind) counts if it overlaps: an
		// answer over the truth rather than under.
		if floorDiv(c.startSec(), g) <= hi {
			n += uint64(c.count())
		}
	}
	return n
}

// Advance implements Frequency: it notes now for Add's merging, then
// merges and drops the cells of every pair of one shard as of now, frees
// the pairs left without cells, and rebuilds the shard's map once it holds
// at most half the pairs its tables were grown for. Called every second,
// it visits every shard each 64 seconds.
func (x *FrequencyExact) Advance(now time.Time) {
	t := now.Unix()
	for l := x.latest.Load(); t > l && !x.latest.CompareAndSwap(l, t); l = x.latest.Load() {
	}
	s := &x.shards[(x.sweep.Add(1)-1)%freqShards]
	s.mu.Lock()
	s.sweepLocked(max(t, x.latest.Load()))
	s.mu.Unlock()
}

func (s *freqShard) sweepLocked(t int64) {
	for key, cells := range s.pairs {
		s.storeLocked(key, freqCompact(cells, freqNewest(cells, t)), cap(cells))
	}
	if s.peak > groupSlots && len(s.pairs) <= s.peak/2 {
		m := make(map[uint64][]freqCell, len(s.pairs))
		for k, v := range s.pairs {
			m[k] = v
		}
		s.pairs, s.peak = m, len(m)
	}
}

// Pairs returns the number of pairs held.
func (x *FrequencyExact) Pairs() int {
	n := 0
	for i := range x.shards {
		s := &x.shards[i]
		s.mu.Lock()
		n += len(s.pairs)
		s.mu.Unlock()
	}
	return n
}

// Bytes implements Frequency with an estimate of the heap held: each
// shard's map at the size Go's maps take for the most pairs it has held
// (see freqMapBytes), and each pair's cells at their allocation size.
func (x *FrequencyExact) Bytes() int64 {
	n := int64(unsafe.Sizeof(*x))
	for i := range x.shards {
		s := &x.shards[i]
		s.mu.Lock()
		n += int64(freqMapBytes(s.peak)) + s.cells
		s.mu.Unlock()
	}
	return n
}

// freqCellsBytes is the heap a cell slice of capacity n takes.
func freqCellsBytes(n int) int64 {
	if n == 0 {
		return 0
	}
	return int64(keyBytes(n * int(unsafe.Sizeof(freqCell{}))))
}

// freqSlot is laid out as the slots of a map[uint64][]freqCell.
type freqSlot struct {
	key   uint64
	cells []freqCell
}

const freqGroupBytes = groupSlots + groupSlots*int(unsafe.Sizeof(freqSlot{}))

// freqMapBytes is the heap a map[uint64][]freqCell of n pairs built by
// inserts takes, by the model of mapBytes (exact_mem.go) with this map's
// slots.
func freqMapBytes(n int) int {
	switch {
	case n == 0:
		return mapHeaderBytes
	case n <= groupSlots:
		return mapHeaderBytes + allocBytes(freqGroupBytes)
	case n <= maxTableLoad:
		slots := 2 * groupSlots
		for slots*7/8 < n {
			slots *= 2
		}
		return mapHeaderBytes + tableBytes + dirEntryBytes + allocBytes(slots/groupSlots*freqGroupBytes)
	}
	perTable := tableBytes + dirEntryBytes + allocBytes(maxTableSlots/groupSlots*freqGroupBytes)
	return mapHeaderBytes + int(math.Round(expectedTables(n)*float64(perTable)))
}
