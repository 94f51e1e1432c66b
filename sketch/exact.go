package sketch

import (
	"encoding/binary"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// Exact is the accuracy-first dedup window: the same K+1 rotating
// generations as Bloom, with a set of the pairs themselves per generation
// and shard. Keys are the pairs' bytes, not hashes, so it never takes a new
// pair for a repeat. Its memory grows with the distinct pairs of the last
// K+1 slices and shrinks as they rotate out. It is safe for concurrent use.
type Exact struct {
	opts   Options
	clock  clock
	hasher Hasher // not used by the sets, which hold the pairs themselves
	seed   maphash.Seed
	shards [exactShards]exactShard

	rotations atomic.Uint64 // generations recycled, over all shards
}

const exactShards = 256

type exactShard struct {
	mu    sync.Mutex // guards ring, gens and bytes
	ring  ring
	gens  []map[string]struct{}
	bytes []int // estimated memory of each generation
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
	for i := range x.shards {
		x.shards[i].ring = newRing(o.Slices + 1)
		x.shards[i].gens = make([]map[string]struct{}, o.Slices+1)
		x.shards[i].bytes = make([]int, o.Slices+1)
	}
	return x, nil
}

// TestAndAdd implements Deduper. If it returns true, the pair was counted
// within the window; if false, it definitely was not, and now it is. A new
// pair costs one allocation, its key.
func (x *Exact) TestAndAdd(campaign, user []byte, now time.Time) bool {
	var stack [maxStackKey]byte
	k := pairKey(stack[:0], campaign, user)
	s := x.lockShard(k, now)
	if s.hasLocked(k) {
		s.mu.Unlock()
		return true
	}
	g := &s.gens[s.ring.head]
	if *g == nil {
		*g = make(map[string]struct{})
	}
	(*g)[string(k)] = struct{}{}
	s.bytes[s.ring.head] += entryBytes(len(k))
	s.mu.Unlock()
	return false
}

// Add implements Deduper.
func (x *Exact) Add(campaign, user []byte, at time.Time) {
	var stack [maxStackKey]byte
	k := pairKey(stack[:0], campaign, user)
	e := x.clock.epoch(at)
	s := x.lockShard(k, at)
	if i, ok := s.ring.slot(e); ok {
		g := &s.gens[i]
		if *g == nil {
			*g = make(map[string]struct{})
		}
		if _, dup := (*g)[string(k)]; !dup {
			(*g)[string(k)] = struct{}{}
			s.bytes[i] += entryBytes(len(k))
		}
	}
	s.mu.Unlock()
}

// lockShard locks the shard of key k and brings it to the slice of now;
// the caller unlocks it.
func (x *Exact) lockShard(k []byte, now time.Time) *exactShard {
	s := &x.shards[maphash.Bytes(x.seed, k)%exactShards]
	s.mu.Lock()
	s.advanceLocked(x.clock.epoch(now), &x.rotations)
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
// garbage collector.
func (x *Exact) Advance(now time.Time) {
	e := x.clock.epoch(now)
	for i := range x.shards {
		s := &x.shards[i]
		s.mu.Lock()
		s.advanceLocked(e, &x.rotations)
		s.mu.Unlock()
	}
}

// Rotations returns how many shard generations have been recycled.
func (x *Exact) Rotations() uint64 { return x.rotations.Load() }

// Generations returns K+1, the generations kept per shard.
func (x *Exact) Generations() int { return x.opts.Slices + 1 }

// Len returns the number of pairs held across all live generations.
func (x *Exact) Len() int {
	n := 0
	for i := range x.shards {
		s := &x.shards[i]
		s.mu.Lock()
		for _, g := range s.gens {
			n += len(g)
		}
		s.mu.Unlock()
	}
	return n
}

// Bytes implements Deduper with an estimate: each pair's key rounded up to
// its allocation size plus its share of the map's slots.
func (x *Exact) Bytes() int {
	n := 0
	for i := range x.shards {
		s := &x.shards[i]
		s.mu.Lock()
		for _, b := range s.bytes {
			n += b
		}
		s.mu.Unlock()
	}
	return n
}

// entryBytes estimates one pair's memory: a 16-byte string header in a map
// slot at about 3/4 load, and the key's bytes rounded up to 16.
func entryBytes(keyLen int) int { return 22 + (keyLen+15)&^15 }

// pairKey appends the length-prefixed pair, as Hasher.Key hashes it.
func pairKey(dst, campaign, user []byte) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(campaign)))
	dst = append(dst, campaign...)
	return append(dst, user...)
}

func (s *exactShard) advanceLocked(e int64, rotations *atomic.Uint64) {
	first := s.ring.epoch == noEpoch // a shard's first touch is not a rotation
	n := s.ring.advance(e)
	if n > 0 && !first {
		rotations.Add(uint64(n))
	}
	for ; n > 0; n-- {
		i := s.ring.next()
		s.bytes[i] = 0
		// A fresh map, not clear(): Go maps never shrink, and memory must
		// follow the live pairs down as well as up.
		s.gens[i] = nil
	}
}

func (s *exactShard) hasLocked(k []byte) bool {
	for _, g := range s.gens {
		if _, ok := g[string(k)]; ok {
			return true
		}
	}
	return false
}
