package sketch

import (
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// Bloom is the fixed-memory dedup window: K+1 rotating generations of
// blocked Bloom filters per shard, stored interleaved. See the package doc
// for its window, false-positive guarantee and layout. It is safe for
// concurrent use.
type Bloom struct {
	opts   Options
	clock  clock
	m, k   uint   // bits and hash positions of every filter, all alike
	blocks uint64 // blocks per filter, m / blockBits
	mask   uint64 // shard = Key.Hi & mask
	shards []bloomShard

	rotations atomic.Uint64 // generations recycled, over all shards
}

type bloomShard struct {
	mu   sync.Mutex // guards ring and words
	ring ring
	// words holds the shard's K+1 filters interleaved by block: block i
	// of generation g is words[(i·(K+1) + g)·blockWords:][:blockWords], so
	// the blocks a key maps to in every generation are one run of
	// (K+1)·64 bytes, on one or two pages, instead of K+1 pages apart.
	words []uint64
	_     [64]byte // keeps neighbouring shards' locks off one cache line
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
		m:      m,
		k:      k,
		blocks: uint64(blocks),
		mask:   uint64(nShards - 1),
		shards: make([]bloomShard, nShards),
	}
	// One allocation for every filter: no allocator rounding per filter,
	// and blocks start on cache-line boundaries (large allocations are
	// page-aligned; every shard's run is a whole number of blocks).
	words := int(m/64) * gens
	slab := make([]uint64, nShards*words)
	for i := range b.shards {
		s := &b.shards[i]
		s.ring = newRing(gens)
		s.words = slab[:words:words]
		slab = slab[words:]
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
	pr := b.probe(key)
	s := b.shard(key)
	e := b.clock.epoch(now)
	s.mu.Lock()
	s.advanceLocked(e, &b.rotations)
	if s.hasLocked(&pr) {
		s.mu.Unlock()
		return true
	}
	pr.add(s.words, pr.off+uint64(s.ring.head)*blockWords)
	s.mu.Unlock()
	return false
}

// Add implements Deduper.
func (b *Bloom) Add(campaign, user []byte, at time.Time) {
	b.AddKey(KeyOf(campaign, user), at)
}

// AddKey is Add for a pair already hashed with KeyOf.
func (b *Bloom) AddKey(key Key, at time.Time) {
	pr := b.probe(key)
	s := b.shard(key)
	e := b.clock.epoch(at)
	s.mu.Lock()
	s.advanceLocked(e, &b.rotations)
	if g, ok := s.ring.slot(e); ok {
		pr.add(s.words, pr.off+uint64(g)*blockWords)
	}
	s.mu.Unlock()
}

// TestKey is Test for a pair already hashed with KeyOf.
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
		step := s.ring.n * blockWords
		for i := s.ring.head * blockWords; i < len(s.words); i += step {
			for _, w := range s.words[i : i+blockWords] {
				set += uint64(bits.OnesCount64(w))
			}
			total += blockBits
		}
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
	off  uint64 // index of the first word of the key's run
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
	p.off = blk * blockWords * uint64(b.opts.Slices+1)
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
	for i := 0; i < n; i++ {
		s.clearGen(s.ring.next())
	}
	if n > 0 && !first {
		rotations.Add(uint64(n))
	}
}

// hasLocked tests the newest generation first: repeats usually come soon
// after the impression they repeat (a user browsing a site), so it most
// often holds them, and its block was touched recently. Only then are the
// older generations probed, all at once: one word of the key's block in
// each, loaded independently of the others so the cache misses overlap
// (the run is contiguous, so they are few), picks the candidates, and only
// those are tested in full, from L1.
func (s *bloomShard) hasLocked(p *probe) bool {
	head := s.ring.head
	if p.in(s.words, p.off+uint64(head)*blockWords) {
		return true
	}
	n := s.ring.n
	run := s.words[p.off : p.off+uint64(n)*blockWords]
	m := p.mask[p.lead]
	for base := 0; base < n; base += 64 { // 64 generations per candidate word
		var cand uint64 // bit i: generation base+i may hold the key
		for i, g := 0, base; g < min(n, base+64); i, g = i+1, g+1 {
			x := run[g*blockWords+int(p.lead)]&m ^ m
			cand |= ((x|-x)>>63 ^ 1) << i
		}
		if head >= base && head < base+64 {
			cand &^= 1 << (head - base)
		}
		for cand != 0 {
			g := base + bits.TrailingZeros64(cand)
			if p.in(run, uint64(g)*blockWords) {
				return true
			}
			cand &= cand - 1
		}
	}
	return false
}

// clearGen empties generation g: every (K+1)-th block of the shard.
func (s *bloomShard) clearGen(g int) {
	step := s.ring.n * blockWords
	for i := g * blockWords; i < len(s.words); i += step {
		clear(s.words[i : i+blockWords])
	}
}
