package sketch

import (
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// Bloom is the fixed-memory dedup window: per shard, a pool of blocked
// Bloom sub-filters that each take at most Load pairs from at most one
// slice of time, and are freed once their last pair is TTL old. The open
// sub-filter is contiguous; the closed ones are interleaved by block. See
// the package doc for its window, false-positive guarantee and layout. It
// is safe for concurrent use.
type Bloom struct {
	opts   Options
	pool   Pool  // per shard
	slice  int64 // ns a sub-filter may span, TTL/K
	ttl    int64 // ns
	m, k   uint  // bits and hash positions of every sub-filter, all alike
	blocks uint64
	hasher Hasher // keys the pairs of TestAndAdd, Test and Add
	mask   uint64 // shard = Key.Hi & mask
	shards []bloomShard
	// fpAt[n] is one sub-filter's false-positive rate holding n pairs,
	// for n up to Load: the gauges sum it over live sub-filters.
	fpAt []float64

	freed     atomic.Uint64 // sub-filters freed, over all shards
	poolFull  atomic.Uint64 // closes refused for want of a free slot
	overfills atomic.Uint64 // pairs added to a sub-filter past its Load
}

// sub is one sub-filter's account: the arrival times of its first and last
// pairs, and how many it holds.
type sub struct {
	first, last int64 // Unix ns
	n           int32
}

type bloomShard struct {
	mu sync.Mutex // guards everything below
	// cur is the open sub-filter, one filter of blocks, taking new pairs.
	// The open sub-filters of all shards are adjacent in memory: repeats,
	// which usually sit there, find a few MiB of hot lines.
	cur    []uint64
	curSub sub
	// old holds the closed sub-filters, R slots interleaved by block:
	// block i of slot j is old[(i·R + j)·blockWords:][:blockWords], so the
	// blocks a fresh key must be checked against are one run of R·64 bytes.
	// Sub-filters close in time order and expire in the same order (their
	// last pairs are in order), so the live ones are a ring: head, the
	// oldest, and the n after it. Slots outside the ring hold stale bits
	// and are never read.
	old        []uint64
	subs       []sub // per slot of old
	head, live int
	_          [64]byte // keeps neighbouring shards' locks off one cache line
}

// NewBloom sizes and allocates every filter up front; memory then stays
// constant.
func NewBloom(o Options) (*Bloom, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	nShards := shardCount((o.Capacity + subFilters(o.Slices) - 1) / subFilters(o.Slices))
	c := float64(o.Capacity) / float64(nShards)
	// Keys spread over shards binomially: size each shard's pool for two
	// standard deviations above its mean share, so few shards ever run
	// above their design point.
	pool := poolFor(c+2*math.Sqrt(c), o.Slices, o.FalsePositiveRate, blockedSizeExact)
	b := &Bloom{
		opts:   o,
		pool:   pool,
		slice:  int64(o.TTL / time.Duration(o.Slices)),
		ttl:    int64(o.TTL),
		m:      pool.Bits,
		k:      pool.Hashes,
		blocks: uint64(pool.Bits / blockBits),
		hasher: o.hasher(),
		mask:   uint64(nShards - 1),
		shards: make([]bloomShard, nShards),
		fpAt:   make([]float64, pool.Load+1),
	}
	for n := range b.fpAt {
		b.fpAt[n] = b.rateAt(n)
	}
	// One allocation for every filter, the open sub-filters first: no
	// allocator rounding per filter, and blocks start on cache-line
	// boundaries (large allocations are page-aligned; every region is a
	// whole number of blocks).
	words := int(b.m / 64)
	slots := pool.Slots - 1
	slab := make([]uint64, nShards*pool.Slots*words)
	adviseHugePages(slab)
	cur, old := slab[:nShards*words], slab[nShards*words:]
	for i := range b.shards {
		s := &b.shards[i]
		s.cur, cur = cur[:words:words], cur[words:]
		s.old, old = old[:words*slots:words*slots], old[words*slots:]
		s.subs = make([]sub, slots)
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
	t := now.UnixNano()
	s.mu.Lock()
	b.expireLocked(s, t)
	if s.hasLocked(&pr) {
		s.mu.Unlock()
		return true
	}
	b.addLocked(s, &pr, t)
	s.mu.Unlock()
	return false
}

// Add implements Deduper: the pair goes where TestAndAdd would have put it
// at time at, untested. Replayed in arrival order, a log rebuilds the pool
// TestAndAdd built.
func (b *Bloom) Add(campaign, user []byte, at time.Time) {
	b.AddKey(b.hasher.Key(campaign, user), at)
}

// AddKey is Add for a pair already hashed with b.Hasher(). A pair already TTL
// old by the shard's newest pair is ignored; one within the span of a live
// closed sub-filter goes into it, so it expires with the pairs it arrived
// among; any other goes where TestAndAdd would put it at at. Replayed in
// arrival order, that is always where it first went; a pair replayed out
// of order, older than the open sub-filter's first, stays blocked until
// that sub-filter expires, longer than its own window by the gap.
func (b *Bloom) AddKey(key Key, at time.Time) {
	pr := b.probe(key)
	s := b.shard(key)
	t := at.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	b.expireLocked(s, t)
	if t <= s.newestLocked()-b.ttl {
		return
	}
	for i := s.live - 1; i >= 0; i-- {
		j := (s.head + i) % len(s.subs)
		if x := &s.subs[j]; x.first <= t && t <= x.last {
			pr.add(s.old, s.oldBlock(pr.off, j))
			x.n++
			return
		}
	}
	b.addLocked(s, &pr, t)
}

// newestLocked is the arrival time of the shard's newest pair, or the
// lowest time if it holds none.
func (s *bloomShard) newestLocked() int64 {
	t := int64(math.MinInt64) + int64(maxTTL)
	if s.curSub.n > 0 {
		t = s.curSub.last
	}
	if s.live > 0 {
		t = max(t, s.subs[(s.head+s.live-1)%len(s.subs)].last)
	}
	return t
}

// maxTTL keeps newestLocked's "no pair" value clear of overflow when the
// TTL is subtracted from it.
const maxTTL = 1 << 62

// TestKey is Test for a pair already hashed with b.Hasher().
func (b *Bloom) TestKey(key Key, now time.Time) bool {
	pr := b.probe(key)
	s := b.shard(key)
	t := now.UnixNano()
	s.mu.Lock()
	b.expireLocked(s, t)
	seen := s.hasLocked(&pr)
	s.mu.Unlock()
	return seen
}

// Advance implements Deduper: it frees the sub-filters whose last pair is
// TTL old at now, in every shard.
func (b *Bloom) Advance(now time.Time) {
	t := now.UnixNano()
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.Lock()
		b.expireLocked(s, t)
		s.mu.Unlock()
	}
}

// expireLocked frees the sub-filters whose last pair arrived TTL or more
// before t: every pair in them has been blocked for at least the TTL, and,
// as a sub-filter spans less than TTL/K, for at most TTL + TTL/K. They
// expire in ring order; a clock that ran backwards can only keep one a
// little longer behind an older one.
func (b *Bloom) expireLocked(s *bloomShard, t int64) {
	for s.live > 0 && s.subs[s.head].last <= t-b.ttl {
		s.head++
		if s.head == len(s.subs) {
			s.head = 0
		}
		s.live--
		b.freed.Add(1)
	}
	if s.curSub.n > 0 && s.curSub.last <= t-b.ttl {
		clear(s.cur)
		s.curSub = sub{}
		b.freed.Add(1)
	}
}

// addLocked records a fresh pair at t in the open sub-filter, first
// closing it if it is full or its first pair is a slice old. With no free
// slot to close it into (more pairs than the capacity, or a clock running
// wild), the open one keeps taking pairs: the false-positive rate rises,
// no pair is forgotten early, and no memory is added.
func (b *Bloom) addLocked(s *bloomShard, pr *probe, t int64) {
	c := &s.curSub
	if c.n > 0 && (int(c.n) >= b.pool.Load || t-c.first >= b.slice) {
		if s.live < len(s.subs) {
			s.close()
		} else {
			b.poolFull.Add(1)
		}
	}
	if c.n == 0 {
		c.first, c.last = t, t
	}
	c.last = max(c.last, t)
	if int(c.n) >= b.pool.Load {
		b.overfills.Add(1)
	}
	if c.n < math.MaxInt32 {
		c.n++
	}
	pr.add(s.cur, pr.off)
}

// close moves the open sub-filter into the slot after the ring's newest,
// block by block, and empties cur to take the next pairs.
func (s *bloomShard) close() {
	j := s.head + s.live
	if j >= len(s.subs) {
		j -= len(s.subs)
	}
	for i := 0; i < len(s.cur); i += blockWords {
		copy(s.old[s.oldBlock(uint64(i), j):][:blockWords], s.cur[i:i+blockWords])
	}
	s.subs[j] = s.curSub
	s.live++
	clear(s.cur)
	s.curSub = sub{}
}

// Bytes implements Deduper: the bits of every filter, fixed at construction.
func (b *Bloom) Bytes() int {
	return len(b.shards) * b.pool.Slots * int(b.m/8)
}

// Rotations implements Deduper: the sub-filters freed since construction.
func (b *Bloom) Rotations() uint64 { return b.freed.Load() }

// Pool returns the layout of each shard's pool of sub-filters.
func (b *Bloom) Pool() Pool { return b.pool }

// PoolStats is a reading of the pools of all shards, for metrics.
type PoolStats struct {
	// Live is the sub-filters holding pairs, Slots the most there can be.
	Live, Slots int
	// OpenLoad is the mean load of the open sub-filters against their
	// design load (1 = full, and closed on the next pair), and MaxOpenLoad
	// the highest of any shard: a burst shows here first.
	OpenLoad, MaxOpenLoad float64
	// FalsePositive estimates the rate at which a fresh pair is taken for
	// a repeat now: per shard, the sum over its live sub-filters of each
	// one's rate at its load, averaged over shards. It stays at most
	// the target while the traffic keeps within Capacity.
	FalsePositive float64
	// PoolFull counts closes refused for want of a free slot, Overfills
	// the pairs added to a sub-filter past its design load: both stay 0
	// while the traffic keeps within Capacity.
	PoolFull, Overfills uint64
}

// Stats reads every shard's accounts (not its bits), one lock at a time.
func (b *Bloom) Stats() PoolStats {
	st := PoolStats{Slots: len(b.shards) * b.pool.Slots, PoolFull: b.poolFull.Load(), Overfills: b.overfills.Load()}
	var fp float64
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.Lock()
		open := float64(s.curSub.n) / float64(b.pool.Load)
		st.OpenLoad += open
		st.MaxOpenLoad = max(st.MaxOpenLoad, open)
		if s.curSub.n > 0 {
			st.Live++
			fp += b.fpOf(s.curSub.n)
		}
		st.Live += s.live
		for j := range s.live {
			fp += b.fpOf(s.subs[(s.head+j)%len(s.subs)].n)
		}
		s.mu.Unlock()
	}
	st.OpenLoad /= float64(len(b.shards))
	st.FalsePositive = fp / float64(len(b.shards))
	return st
}

func (b *Bloom) fpOf(n int32) float64 {
	if int(n) < len(b.fpAt) {
		return b.fpAt[n]
	}
	return b.rateAt(int(n))
}

// rateAt is one sub-filter's false-positive rate holding n pairs.
func (b *Bloom) rateAt(n int) float64 {
	return blockedRate(float64(n)/float64(b.blocks), b.k)
}

// TargetFalsePositiveRate is the layer's target, Options.FalsePositiveRate.
func (b *Bloom) TargetFalsePositiveRate() float64 { return b.opts.FalsePositiveRate }

// SubFilterFalsePositiveRate is f, the rate one full sub-filter is sized
// for so that a lookup over all the live ones meets the layer's target.
func (b *Bloom) SubFilterFalsePositiveRate() float64 { return b.pool.Rate }

// Shards, Generations, FilterBits and HashCount describe the layout chosen
// for the Options: Shards × Generations sub-filters of FilterBits bits
// probed at HashCount positions each.
func (b *Bloom) Shards() int      { return len(b.shards) }
func (b *Bloom) Generations() int { return b.pool.Slots }
func (b *Bloom) FilterBits() uint { return b.m }
func (b *Bloom) HashCount() uint  { return b.k }

// shard picks a shard from the low 8 bits (at most) of Key.Hi, which no
// other part of the probe reads: keys sharing a shard must not share
// anything else of their layout.
func (b *Bloom) shard(key Key) *bloomShard {
	return &b.shards[key.Hi&b.mask]
}

// blockBits is the size of a block, one cache line: all k positions of a
// key in one filter fall in one block, so a probe of a sub-filter costs
// one cache line instead of k. Blocking costs bits (see blockedSizeLoad).
const (
	blockBits  = 512
	blockWords = blockBits / 64
)

// probe is a key's place in the shard's filters: its block run (every
// filter has the same m and k, so it is computed once, outside the lock)
// and the k bits to test or set in the block of a sub-filter.
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

// eachLive calls f with the slot index of every live closed sub-filter,
// oldest first.
func (s *bloomShard) eachLive(f func(j int)) {
	for i := range s.live {
		j := s.head + i
		if j >= len(s.subs) {
			j -= len(s.subs)
		}
		f(j)
	}
}

// oldBlock returns the index in old of the block at off (block index ×
// blockWords, as in probe) of slot j.
func (s *bloomShard) oldBlock(off uint64, j int) uint64 {
	return off*uint64(len(s.subs)) + uint64(j)*blockWords
}

// hasLocked tests the open sub-filter first: repeats usually come soon
// after the impression they repeat (a user browsing a site), so it most
// often holds them. Only then are the live closed sub-filters probed, all
// at once: one word of the key's block in each, loaded with no branch in
// between so the cache misses overlap (the run is contiguous, so they are
// few), picks the candidates, and only those are tested in full, from L1.
func (s *bloomShard) hasLocked(p *probe) bool {
	if p.in(s.cur, p.off) {
		return true
	}
	r := len(s.subs)
	at := p.off * uint64(r)
	run := s.old[at : at+uint64(r)*blockWords]
	// The ring's slots are head..r-1 then 0..: at most two contiguous
	// spans of the run.
	first := min(s.live, r-s.head)
	return p.inSpan(run, s.head, s.head+first) || p.inSpan(run, 0, s.live-first)
}

// inSpan reports whether one of the slots lo..hi-1 of run holds the key.
func (p *probe) inSpan(run []uint64, lo, hi int) bool {
	m := p.mask[p.lead]
	for base := lo; base < hi; base += 64 { // 64 slots per candidate word
		var cand uint64 // bit i: slot base+i may hold the key
		for i, j := 0, base; j < min(hi, base+64); i, j = i+1, j+1 {
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
