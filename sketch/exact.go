package sketch

import (
	"encoding/binary"
	"errors"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Exact is the accuracy-first dedup window: the same K+1 rotating
// generations as Bloom, with a set of the pairs themselves per generation
// and shard. Keys are the pairs' bytes, not hashes, so it never takes a new
// pair for a repeat. Its memory grows with the distinct pairs of the last
// K+1 slices and shrinks as they rotate out; with Options.MaxPairs, the
// pairs it holds never exceed that bound (pairs restored at start-up
// aside). It is safe for concurrent use.
type Exact struct {
	opts   Options
	clock  clock
	hasher Hasher // not used by the sets, which hold the pairs themselves
	seed   maphash.Seed
	shards [exactShards]exactShard

	// live counts the pairs of all live generations: reserved before a
	// pair is inserted, released when its generation is dropped.
	live struct {
		atomic.Int64
		_ [56]byte
	}
	// oldest is the slice of the oldest generation holding pairs, as of
	// the last Advance; noEpoch when none did.
	oldest    atomic.Int64
	advanced  atomic.Int64  // the newest slice an Advance was run for
	rotations atomic.Uint64 // generations recycled, over all shards
}

// ErrFull is returned by TestAndAddLimited for a new pair while the window
// holds Options.MaxPairs pairs: the pair was not recorded.
var ErrFull = errors.New("sketch: exact window holds its maximum number of pairs")

const exactShards = 256

type exactShard struct {
	mu    sync.Mutex // guards ring, gens and bytes
	ring  ring
	gens  []map[string]struct{}
	bytes []int // estimated memory of each generation's keys (keyBytes)
	_     [64]byte
}

// NewExact returns an empty Exact window. Capacity and FalsePositiveRate
// are validated but otherwise unused.
func NewExact(o Options) (*Exact, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	x := &Exact{opts: o, clock: clock{slice: int64(o.TTL / time.Duration(o.Slices))}, hasher: o.hasher(), seed: maphash.MakeSeed()}
	x.oldest.Store(noEpoch)
	x.advanced.Store(noEpoch)
	for i := range x.shards {
		x.shards[i].ring = newRing(o.Slices + 1)
		x.shards[i].gens = make([]map[string]struct{}, o.Slices+1)
		x.shards[i].bytes = make([]int, o.Slices+1)
	}
	return x, nil
}

// TestAndAdd implements Deduper. If it returns false, the pair definitely
// was not counted within the window, and now it is. If true, it was, or
// the window holds MaxPairs pairs and could not record it: the pair is
// then not to be counted, as a Bloom false positive would not be
// (TestAndAddLimited tells the two apart). A new pair costs one
// allocation, its key.
func (x *Exact) TestAndAdd(campaign, user []byte, now time.Time) bool {
	seen, err := x.TestAndAddLimited(campaign, user, now)
	return seen || err != nil
}

// TestAndAddLimited is TestAndAdd under Options.MaxPairs. If seen, the
// pair was counted within the window. If not and err is nil, it definitely
// was not, and now it is. If err is ErrFull, it was not counted and the
// window holds MaxPairs pairs: the pair was not recorded, and nothing
// changed. Of concurrent calls, at most MaxPairs new pairs in all are
// recorded until generations expire; each costs one atomic
// compare-and-swap on a shared counter. Shards rotate lazily, so the
// first refusal in a slice newer than the last Advance runs Advance, to
// release what expired in shards not touched since, and tries again.
func (x *Exact) TestAndAddLimited(campaign, user []byte, now time.Time) (seen bool, err error) {
	var stack [maxStackKey]byte
	k := pairKey(stack[:0], campaign, user)
	seen, err = x.testAndAddLimited(k, now)
	if err != nil && x.advanceOnce(now) {
		seen, err = x.testAndAddLimited(k, now)
	}
	return seen, err
}

func (x *Exact) testAndAddLimited(k []byte, now time.Time) (seen bool, err error) {
	s := x.lockShard(k, now)
	defer s.mu.Unlock()
	if s.hasLocked(k) {
		return true, nil
	}
	if !x.reserve() {
		return false, ErrFull
	}
	s.insertLocked(s.ring.head, k)
	return false, nil
}

// advanceOnce runs Advance if no Advance has reached now's slice yet, and
// reports whether it did; of concurrent calls in one slice, one does.
func (x *Exact) advanceOnce(now time.Time) bool {
	e := x.clock.epoch(now)
	last := x.advanced.Load()
	if e <= last || !x.advanced.CompareAndSwap(last, e) {
		return false
	}
	x.Advance(now)
	return true
}

// reserve counts one more live pair, unless the window holds MaxPairs.
func (x *Exact) reserve() bool {
	limit := int64(x.opts.MaxPairs)
	if limit == 0 {
		x.live.Add(1)
		return true
	}
	for {
		n := x.live.Load()
		if n >= limit {
			return false
		}
		if x.live.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// insertLocked adds key k, known to be absent, to generation i.
func (s *exactShard) insertLocked(i int, k []byte) {
	g := &s.gens[i]
	if *g == nil {
		*g = make(map[string]struct{})
	}
	(*g)[string(k)] = struct{}{}
	s.bytes[i] += keyBytes(len(k))
}

// Add implements Deduper. It replays pairs that were counted, so it
// ignores MaxPairs: the pairs count against the bound, and while they
// exceed it TestAndAddLimited refuses every new pair.
func (x *Exact) Add(campaign, user []byte, at time.Time) {
	var stack [maxStackKey]byte
	k := pairKey(stack[:0], campaign, user)
	e := x.clock.epoch(at)
	s := x.lockShard(k, at)
	if i, ok := s.ring.slot(e); ok {
		if _, dup := s.gens[i][string(k)]; !dup {
			x.live.Add(1)
			s.insertLocked(i, k)
		}
	}
	s.mu.Unlock()
}

// lockShard locks the shard of key k and brings it to the slice of now;
// the caller unlocks it.
func (x *Exact) lockShard(k []byte, now time.Time) *exactShard {
	s := &x.shards[maphash.Bytes(x.seed, k)%exactShards]
	s.mu.Lock()
	s.advanceLocked(x.clock.epoch(now), x)
	return s
}

// Test implements Deduper.
func (x *Exact) Test(campaign, user []byte, now time.Time) bool {
	var stack [maxStackKey]byte
	k := pairKey(stack[:0], campaign, user)
	s := x.lockShard(k, now)
	seen := s.hasLocked(k)
	s.mu.Unlock()
	return seen
}

// Advance implements Deduper; expired generations are released to the
// garbage collector and their pairs to MaxPairs. It also notes the oldest
// slice still holding pairs, for RetryAfter.
func (x *Exact) Advance(now time.Time) {
	e := x.clock.epoch(now)
	for last := x.advanced.Load(); e > last; last = x.advanced.Load() {
		if x.advanced.CompareAndSwap(last, e) {
			break
		}
	}
	oldest := int64(math.MaxInt64)
	for i := range x.shards {
		s := &x.shards[i]
		s.mu.Lock()
		s.advanceLocked(e, x)
		oldest = min(oldest, s.oldestLocked())
		s.mu.Unlock()
	}
	if oldest == math.MaxInt64 {
		oldest = noEpoch
	}
	x.oldest.Store(oldest)
}

// RetryAfter returns how long after now the window next drops pairs and
// so makes room under MaxPairs: when the oldest generation holding pairs,
// as of the last Advance, leaves the window, or, if that has passed or is
// unknown, the next slice boundary. It is a hint for clients refused with
// ErrFull; it is always positive.
func (x *Exact) RetryAfter(now time.Time) time.Duration {
	e := x.clock.epoch(now)
	free := e + 1
	if o := x.oldest.Load(); o != noEpoch && o+int64(x.Generations()) > e {
		free = o + int64(x.Generations())
	}
	return time.Duration(free*x.clock.slice - now.UnixNano())
}

// MaxPairs returns Options.MaxPairs, the bound on the pairs held; 0 if
// unbounded.
func (x *Exact) MaxPairs() int { return x.opts.MaxPairs }

// Rotations returns how many shard generations have been recycled.
func (x *Exact) Rotations() uint64 { return x.rotations.Load() }

// Generations returns K+1, the generations kept per shard.
func (x *Exact) Generations() int { return x.opts.Slices + 1 }

// Len returns the number of pairs held across all live generations, the
// number MaxPairs bounds. It is one atomic load.
func (x *Exact) Len() int { return int(x.live.Load()) }

// Bytes implements Deduper with an estimate of the heap the generations
// hold: each key at its allocation size, and each map at the size Go's
// maps take for its number of pairs (see mapBytes).
func (x *Exact) Bytes() int {
	n := 0
	for i := range x.shards {
		s := &x.shards[i]
		s.mu.Lock()
		for g, b := range s.bytes {
			n += b + mapBytes(len(s.gens[g]))
		}
		s.mu.Unlock()
	}
	return n
}

// pairKey appends the length-prefixed pair, as Hasher.Key hashes it.
func pairKey(dst, campaign, user []byte) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(campaign)))
	dst = append(dst, campaign...)
	return append(dst, user...)
}

// advanceLocked brings the shard to slice e, dropping the generations
// that leave the window and releasing their pairs from x's count.
func (s *exactShard) advanceLocked(e int64, x *Exact) {
	first := s.ring.epoch == noEpoch // a shard's first touch is not a rotation
	n := s.ring.advance(e)
	if n > 0 && !first {
		x.rotations.Add(uint64(n))
	}
	for ; n > 0; n-- {
		i := s.ring.next()
		if l := len(s.gens[i]); l > 0 {
			x.live.Add(-int64(l))
		}
		s.bytes[i] = 0
		// A fresh map, not clear(): Go maps never shrink, and memory must
		// follow the live pairs down as well as up.
		s.gens[i] = nil
	}
}

// oldestLocked returns the slice of the shard's oldest generation holding
// pairs, or math.MaxInt64 if none does.
func (s *exactShard) oldestLocked() int64 {
	for age := s.ring.n - 1; age >= 0; age-- {
		if len(s.gens[(s.ring.head-age+s.ring.n)%s.ring.n]) > 0 {
			return s.ring.epoch - int64(age)
		}
	}
	return math.MaxInt64
}

func (s *exactShard) hasLocked(k []byte) bool {
	for _, g := range s.gens {
		if _, ok := g[string(k)]; ok {
			return true
		}
	}
	return false
}
