package sketch

import (
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bits-and-blooms/bloom/v3"
)

// Bloom is the fixed-memory dedup window: K+1 rotating generations of
// bits-and-blooms/bloom/v3 filters per shard. See the package doc for its
// window and false-positive guarantee. It is safe for concurrent use.
type Bloom struct {
	opts   Options
	clock  clock
	m, k   uint   // bits and hash positions of every filter, all alike
	mask   uint64 // shard = Key.Hi & mask
	shards []bloomShard

	rotations atomic.Uint64 // generations recycled, over all shards
}

type bloomShard struct {
	mu    sync.Mutex // guards ring and the bits of gens
	ring  ring
	gens  []*bloom.BloomFilter
	words [][]uint64 // gens[i].BitSet().Words(), cached for the probe loop
	_     [64]byte   // keeps neighbouring shards' locks off one cache line
}

// NewBloom sizes and allocates every filter up front; memory then stays
// constant.
func NewBloom(o Options) (*Bloom, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	gens := o.Slices + 1
	perSlice := (o.Capacity + o.Slices - 1) / o.Slices
	nShards := shardCount(perSlice)
	perShard := (perSlice + nShards - 1) / nShards
	m, k := filterSize(perShard, sliceRate(o.FalsePositiveRate, gens))
	b := &Bloom{
		opts:   o,
		clock:  clock{slice: int64(o.TTL / time.Duration(o.Slices))},
		m:      m,
		k:      k,
		mask:   uint64(nShards - 1),
		shards: make([]bloomShard, nShards),
	}
	for i := range b.shards {
		s := &b.shards[i]
		s.ring = newRing(gens)
		s.gens = make([]*bloom.BloomFilter, gens)
		s.words = make([][]uint64, gens)
		for g := range s.gens {
			s.gens[g] = bloom.New(m, k)
			s.words[g] = s.gens[g].BitSet().Words()
		}
	}
	return b, nil
}

// TestAndAdd implements Deduper. If it returns true, the pair might be a
// false positive; if false, the pair was definitely not counted within the
// TTL, and now it is.
func (b *Bloom) TestAndAdd(campaign, user []byte, now time.Time) bool {
	return b.TestAndAddKey(KeyOf(campaign, user), now)
}

// Test implements Deduper, with TestAndAdd's meaning of true and false.
func (b *Bloom) Test(campaign, user []byte, now time.Time) bool {
	return b.TestKey(KeyOf(campaign, user), now)
}

// TestAndAddKey is TestAndAdd for a pair already hashed with KeyOf.
func (b *Bloom) TestAndAddKey(key Key, now time.Time) bool {
	var buf [maxK]uint64
	pos := b.positions(key, buf[:b.k])
	s := b.shard(key)
	e := b.clock.epoch(now)
	s.mu.Lock()
	s.advanceLocked(e, &b.rotations)
	if s.hasLocked(pos) {
		s.mu.Unlock()
		return true
	}
	w := s.words[s.ring.head]
	for _, p := range pos {
		w[p>>6] |= 1 << (p & 63)
	}
	s.mu.Unlock()
	return false
}

// Add implements Deduper.
func (b *Bloom) Add(campaign, user []byte, at time.Time) {
	b.AddKey(KeyOf(campaign, user), at)
}

// AddKey is Add for a pair already hashed with KeyOf.
func (b *Bloom) AddKey(key Key, at time.Time) {
	var buf [maxK]uint64
	pos := b.positions(key, buf[:b.k])
	s := b.shard(key)
	e := b.clock.epoch(at)
	s.mu.Lock()
	s.advanceLocked(e, &b.rotations)
	if g, ok := s.ring.slot(e); ok {
		w := s.words[g]
		for _, p := range pos {
			w[p>>6] |= 1 << (p & 63)
		}
	}
	s.mu.Unlock()
}

// TestKey is Test for a pair already hashed with KeyOf.
func (b *Bloom) TestKey(key Key, now time.Time) bool {
	var buf [maxK]uint64
	pos := b.positions(key, buf[:b.k])
	s := b.shard(key)
	e := b.clock.epoch(now)
	s.mu.Lock()
	s.advanceLocked(e, &b.rotations)
	seen := s.hasLocked(pos)
	s.mu.Unlock()
	return seen
}

// Advance implements Deduper.
func (b *Bloom) Advance(now time.Time) {
	e := b.clock.epoch(now)
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.Lock()
		s.advanceLocked(e, &b.rotations)
		s.mu.Unlock()
	}
}

// Bytes implements Deduper: the bits of every filter, fixed at construction.
func (b *Bloom) Bytes() int {
	return len(b.shards) * (b.opts.Slices + 1) * int(b.m/8)
}

// Rotations returns how many shard generations have been recycled since
// construction: Shards() per slice boundary once traffic has touched every
// shard.
func (b *Bloom) Rotations() uint64 { return b.rotations.Load() }

// NewestFillRatio returns the share of bits set in the newest generation,
// over all shards. A fresh pair is a false positive in that generation with
// probability about NewestFillRatio()^HashCount(); at the design load the
// ratio is about one half. It reads every filter of one generation, so it
// is meant for metrics scrapes, not the request path.
func (b *Bloom) NewestFillRatio() float64 {
	var set, total uint64
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.Lock()
		for _, w := range s.words[s.ring.head] {
			set += uint64(bits.OnesCount64(w))
		}
		total += uint64(len(s.words[s.ring.head]) * 64)
		s.mu.Unlock()
	}
	if total == 0 {
		return 0
	}
	return float64(set) / float64(total)
}

// SliceFalsePositiveRate is p_s, the rate each generation's filter is sized
// for so that a lookup over all of them meets the layer's target.
func (b *Bloom) SliceFalsePositiveRate() float64 {
	return sliceRate(b.opts.FalsePositiveRate, b.opts.Slices+1)
}

// Shards, Generations, FilterBits and HashCount describe the layout chosen
// for the Options: Shards × Generations filters of FilterBits bits probed at
// HashCount positions each.
func (b *Bloom) Shards() int      { return len(b.shards) }
func (b *Bloom) Generations() int { return b.opts.Slices + 1 }
func (b *Bloom) FilterBits() uint { return b.m }
func (b *Bloom) HashCount() uint  { return b.k }

// shard picks a shard from the low bits of Key.Hi. Not the high bits: Hi
// is also the stride of the probe sequence (see positions), and the
// multiply-shift mapping reads a stride by its high bits, so keys sharing a
// shard would share the shape of their probe sequences, raising the
// false-positive rate measurably (by about 20% at 256 shards).
func (b *Bloom) shard(key Key) *bloomShard {
	return &b.shards[key.Hi&b.mask]
}

// positions fills pos with the key's bit positions, computed once and
// probed in every generation: all filters share m and k. It uses enhanced
// double hashing (Kirsch–Mitzenmacher) over the two halves of the key, and
// maps each 64-bit value to [0, m) by multiply-shift instead of a division.
func (b *Bloom) positions(key Key, pos []uint64) []uint64 {
	h1, h2 := key.Lo, key.Hi|1
	for i := range pos {
		hi, _ := bits.Mul64(h1, uint64(b.m))
		pos[i] = hi
		h1 += h2
		h2 += uint64(i) + 1
	}
	return pos
}

func (s *bloomShard) advanceLocked(e int64, rotations *atomic.Uint64) {
	first := s.ring.epoch == noEpoch // a shard's first touch is not a rotation
	n := s.ring.advance(e)
	for i := 0; i < n; i++ {
		s.gens[s.ring.next()].ClearAll()
	}
	if n > 0 && !first {
		rotations.Add(uint64(n))
	}
}

// hasLocked tests the generations newest first: repeats usually come soon
// after the impression they repeat (a user browsing a site), so the newest
// generation most often holds them and the older ones need no probing.
func (s *bloomShard) hasLocked(pos []uint64) bool {
	for g, i := s.ring.head, 0; i < len(s.words); i++ {
		if hasAll(s.words[g], pos) {
			return true
		}
		if g--; g < 0 {
			g = len(s.words) - 1
		}
	}
	return false
}

func hasAll(w []uint64, pos []uint64) bool {
	for _, p := range pos {
		if w[p>>6]&(1<<(p&63)) == 0 {
			return false
		}
	}
	return true
}
