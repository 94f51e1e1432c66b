package sketch

import (
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// Bloom is the fixed-memory dedup window: K+1 rotating generations of
// blocked Bloom filters per shard, the newest one contiguous and the K
// older ones interleaved by block. See the package doc for its window,
// false-positive guarantee and layout. It is safe for concurrent use.
type Bloom struct {
	opts   Options
	clock  clock
	hasher Hasher // keys the pairs of TestAndAdd, Test and Add
	m, k   uint   // bits and hash positions of every filter, all alike
	blocks uint64 // blocks per filter, m / blockBits
	mask   uint64 // shard = Key.Hi & mask
	shards []bloomShard

	rotations atomic.Uint64 // generations recycled, over all shards
}

type bloomShard struct {
	mu   sync.Mutex // guards everything below
	ring ring
	// cur is the newest generation (ring.head), one filter of blocks. The
	// newest generations of all shards are adjacent in memory: repeats,
	// which usually sit there, find a few MiB of hot lines.
	cur []uint64
	// old holds the K older generations interleaved by block: block i of
	// slot j is old[(i·K + j)·blockWords:][:blockWords], so the K blocks a
	// fresh key must be checked against are one run of K·64 bytes, on one
	// or two pages, instead of K lines on K pages.
	old []uint64
	// slot maps a generation's ring index to its slot in old; the head's
	// entry is unused.
	slot []uint16
	_    [64]byte // keeps neighbouring shards' locks off one cache line
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
	blocks, k := blockedSize(perShard, sliceRate(o.FalsePositiveRate, gens))
	m := blocks * blockBits
	b := &Bloom{
		opts:   o,
		clock:  clock{slice: int64(o.TTL / time.Duration(o.Slices))},
		hasher: o.hasher(),
		m:      m,
		k:      k,
		blocks: uint64(blocks),
		mask:   uint64(nShards - 1),
		shards: make([]bloomShard, nShards),
	}
	// One allocation for every filter, the newest generations first: no
	// allocator rounding per filter, and blocks start on cache-line
	// boundaries (large allocations are page-aligned; every region is a
	// whole number of blocks).
	words := int(m / 64)
	slab := make([]uint64, nShards*gens*words)
	cur, old := slab[:nShards*words], slab[nShards*words:]
	for i := range b.shards {
		s := &b.shards[i]
		s.ring = newRing(gens)
		s.cur, cur = cur[:words:words], cur[words:]
		s.old, old = old[:words*o.Slices:words*o.Slices], old[words*o.Slices:]
		s.slot = make([]uint16, gens)
		s.resetSlots()
	}
	return b, nil
}

// TestAndAdd implements Deduper. If it returns true, the pair might be a
// false positive; if false, the pair was definitely not counted within the
// TTL, and now it is.
func (b *Bloom) TestAndAdd(campaign, user []byte, now time.Time) bool {
	return b.TestAndAddKey(b.hasher.Key(campaign, user), now)
}

// Test implements Deduper, with TestAndAdd's meaning of true and false.
func (b *Bloom) Test(campaign, user []byte, now time.Time) bool {
	return b.TestKey(b.hasher.Key(campaign, user), now)
}

// TestAndAddKey is TestAndAdd for a pair already hashed with b.Hasher().
func (b *Bloom) TestAndAddKey(key Key, now time.Time) bool {
	pr := b.probe(key)
	s := b.shard(key)
	e := b.clock.epoch(now)
	s.mu.Lock()
	s.advanceLocked(e, &b.rotations)
	if s.hasLocked(&pr) {
		s.mu.Unlock()
		return true
	}
	pr.add(s.cur, pr.off)
	s.mu.Unlock()
	return false
}

// Add implements Deduper.
func (b *Bloom) Add(campaign, user []byte, at time.Time) {
	b.AddKey(b.hasher.Key(campaign, user), at)
}

// AddKey is Add for a pair already hashed with b.Hasher().
func (b *Bloom) AddKey(key Key, at time.Time) {
	pr := b.probe(key)
	s := b.shard(key)
	e := b.clock.epoch(at)
	s.mu.Lock()
	s.advanceLocked(e, &b.rotations)
	if g, ok := s.ring.slot(e); ok {
		if g == s.ring.head {
			pr.add(s.cur, pr.off)
		} else {
			pr.add(s.old, s.oldBlock(pr.off, s.slot[g]))
		}
	}
	s.mu.Unlock()
}

// TestKey is Test for a pair already hashed with b.Hasher().
func (b *Bloom) TestKey(key Key, now time.Time) bool {
	pr := b.probe(key)
	s := b.shard(key)
	e := b.clock.epoch(now)
	s.mu.Lock()
	s.advanceLocked(e, &b.rotations)
	seen := s.hasLocked(&pr)
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
// over all shards; at the design load it is about 0.4. It reads every
// filter of one generation, so it is meant for metrics scrapes, not the
// request path.
func (b *Bloom) NewestFillRatio() float64 {
	var set, total uint64
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.Lock()
		for _, w := range s.cur {
			set += uint64(bits.OnesCount64(w))
		}
		total += uint64(len(s.cur) * 64)
		s.mu.Unlock()
	}
	if total == 0 {
		return 0
	}
	return float64(set) / float64(total)
}

// FalsePositiveAtFill returns the false-positive rate of one generation
// whose share of set bits is fill, as NewestFillRatio reports it. Blocks
// hold Poisson(λ) pairs, so a share 1 − exp(−λ·(1 − (1 − 1/B)^k)) of the
// bits is set; λ is solved from fill and the rate follows from blockedRate.
// It is higher than fill^k, which ignores that pairs crowd some blocks.
func (b *Bloom) FalsePositiveAtFill(fill float64) float64 {
	if fill <= 0 {
		return 0
	}
	if fill >= 1 {
		return 1
	}
	perPair := -math.Expm1(float64(b.k) * math.Log1p(-1.0/blockBits))
	return blockedRate(-math.Log1p(-fill)/perPair, b.k)
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

// shard picks a shard from the low 8 bits (at most) of Key.Hi, which no
// other part of the probe reads: keys sharing a shard must not share
// anything else of their layout.
func (b *Bloom) shard(key Key) *bloomShard {
	return &b.shards[key.Hi&b.mask]
}

// blockBits is the size of a block, one cache line: all k positions of a
// key in one filter fall in one block, so a probe of a generation costs one
// cache line instead of k. Blocking costs bits (see blockedSize).
const (
	blockBits  = 512
	blockWords = blockBits / 64
)

// probe is a key's place in the shard's filters: its block run (every
// filter has the same m and k, so it is computed once, outside the lock)
// and the k bits to test or set in the block of a generation.
type probe struct {
	off  uint64 // block index × blockWords
	lead uint8  // the mask word of the first position, tested first
	mask [blockWords]uint64
}

// probe maps the key to a block by multiply-shift of Key.Lo, and takes its
// k positions within the block from 9-bit fields: six from bits 8–63 of
// Key.Hi (bits 0–7 pick the shard), six from Key.Lo remixed by an odd
// multiplier (so they do not repeat the bits that picked the block), and
// any further ones from an LCG seeded with both halves. Each position is
// uniform over the block and independent of the shard and the block, with
// replacement: the model blockedRate assumes.
func (b *Bloom) probe(key Key) (p probe) {
	blk, _ := bits.Mul64(key.Lo, b.blocks)
	p.off = blk * blockWords
	set := func(pos uint64) { p.mask[pos>>6] |= 1 << (pos & 63) }
	x := key.Hi >> 8
	for i := uint(0); i < min(b.k, 6); i++ {
		set(x & (blockBits - 1))
		x >>= 9
	}
	x = key.Lo * 0x9e3779b97f4a7c15 >> 10
	for i := uint(6); i < min(b.k, 12); i++ {
		set(x & (blockBits - 1))
		x >>= 9
	}
	x = key.Hi ^ key.Lo
	for i := uint(12); i < b.k; i++ {
		x = x*6364136223846793005 + 1442695040888963407
		set(x >> (64 - 9))
	}
	p.lead = uint8(key.Hi >> 8 & (blockBits - 1) >> 6)
	return p
}

// in reports whether all the probe's bits are set in the block at w[off:].
func (p *probe) in(w []uint64, off uint64) bool {
	b := w[off : off+blockWords : off+blockWords]
	return (b[0]&p.mask[0]^p.mask[0])|(b[1]&p.mask[1]^p.mask[1])|
		(b[2]&p.mask[2]^p.mask[2])|(b[3]&p.mask[3]^p.mask[3])|
		(b[4]&p.mask[4]^p.mask[4])|(b[5]&p.mask[5]^p.mask[5])|
		(b[6]&p.mask[6]^p.mask[6])|(b[7]&p.mask[7]^p.mask[7]) == 0
}

// add sets the probe's bits in the block at w[off:].
func (p *probe) add(w []uint64, off uint64) {
	b := w[off : off+blockWords : off+blockWords]
	for i := range b {
		b[i] |= p.mask[i]
	}
}

func (s *bloomShard) advanceLocked(e int64, rotations *atomic.Uint64) {
	first := s.ring.epoch == noEpoch // a shard's first touch is not a rotation
	n := s.ring.advance(e)
	if n >= s.ring.n {
		// The whole window expired: nothing to keep, whatever the order.
		clear(s.cur)
		clear(s.old)
		for range n {
			s.ring.next()
		}
		s.resetSlots()
	} else {
		for range n {
			s.rotate()
		}
	}
	if n > 0 && !first {
		rotations.Add(uint64(n))
	}
}

// rotate retires the oldest generation: the newest moves into the oldest's
// slot of old, block by block, and cur is emptied to become the new head.
func (s *bloomShard) rotate() {
	h := s.ring.head
	g := s.ring.next() // the oldest, now the head
	j := s.slot[g]
	for i := 0; i < len(s.cur); i += blockWords {
		copy(s.old[s.oldBlock(uint64(i), j):][:blockWords], s.cur[i:i+blockWords])
	}
	clear(s.cur)
	s.slot[h] = j
}

// eachBlock calls f with every block of generation g (a ring index), in
// block order, wherever the generation lives.
func (s *bloomShard) eachBlock(g int, f func(block []uint64)) {
	for i := 0; i < len(s.cur); i += blockWords {
		if g == s.ring.head {
			f(s.cur[i : i+blockWords])
		} else {
			f(s.old[s.oldBlock(uint64(i), s.slot[g]):][:blockWords])
		}
	}
}

// resetSlots assigns old's slots to the generations other than the head in
// ring order, as after construction.
func (s *bloomShard) resetSlots() {
	j := uint16(0)
	for g := range s.slot {
		if g != s.ring.head {
			s.slot[g] = j
			j++
		}
	}
}

// oldBlock returns the index in old of the block at off (block index ×
// blockWords, as in probe) of slot j.
func (s *bloomShard) oldBlock(off uint64, j uint16) uint64 {
	return off*uint64(len(s.slot)-1) + uint64(j)*blockWords
}

// hasLocked tests the newest generation first: repeats usually come soon
// after the impression they repeat (a user browsing a site), so it most
// often holds them. Only then are the K older generations probed, all at
// once: one word of the key's block in each, loaded with no branch in
// between so the cache misses overlap (the run is contiguous, so they are
// few), picks the candidates, and only those are tested in full, from L1.
// Every slot of old is a live generation, so no mapping is needed here.
func (s *bloomShard) hasLocked(p *probe) bool {
	if p.in(s.cur, p.off) {
		return true
	}
	k := len(s.slot) - 1
	at := p.off * uint64(k)
	run := s.old[at : at+uint64(k)*blockWords]
	m := p.mask[p.lead]
	for base := 0; base < k; base += 64 { // 64 generations per candidate word
		var cand uint64 // bit i: slot base+i may hold the key
		for i, j := 0, base; j < min(k, base+64); i, j = i+1, j+1 {
			x := run[j*blockWords+int(p.lead)]&m ^ m
			cand |= ((x|-x)>>63 ^ 1) << i
		}
		for cand != 0 {
			j := base + bits.TrailingZeros64(cand)
			if p.in(run, uint64(j)*blockWords) {
				return true
			}
			cand &= cand - 1
		}
	}
	return false
}
