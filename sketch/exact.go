package sketch

import (
	"sync"
	"time"
)

// Exact is the accuracy-first dedup window: the same K+1 rotating
// generations as Bloom, with a hash set of keys per generation and shard. It
// never takes a new pair for a repeat; its memory grows with the distinct
// pairs of the last K+1 slices and shrinks as they rotate out. It is safe for
// concurrent use.
type Exact struct {
	opts   Options
	clock  clock
	shards [exactShards]exactShard
}

const exactShards = 256

// bytesPerPair estimates what a map[Key]struct{} entry costs: a 16-byte
// slot plus a control byte, at an average load of about 3/4 after growth.
const bytesPerPair = 24

type exactShard struct {
	mu   sync.Mutex // guards ring and gens
	ring ring
	gens []map[Key]struct{}
	_    [64]byte
}

// NewExact returns an empty Exact window. Capacity and FalsePositiveRate
// are validated but otherwise unused.
func NewExact(o Options) (*Exact, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	x := &Exact{opts: o, clock: clock{slice: int64(o.TTL / time.Duration(o.Slices))}}
	for i := range x.shards {
		x.shards[i].ring = newRing(o.Slices + 1)
		x.shards[i].gens = make([]map[Key]struct{}, o.Slices+1)
	}
	return x, nil
}

// TestAndAdd implements Deduper. If it returns true, the pair was counted
// within the window; if false, it definitely was not, and now it is.
func (x *Exact) TestAndAdd(key Key, now time.Time) bool {
	s := &x.shards[key.Hi%exactShards]
	e := x.clock.epoch(now)
	s.mu.Lock()
	s.advanceLocked(e)
	if s.hasLocked(key) {
		s.mu.Unlock()
		return true
	}
	g := &s.gens[s.ring.head]
	if *g == nil {
		*g = make(map[Key]struct{})
	}
	(*g)[key] = struct{}{}
	s.mu.Unlock()
	return false
}

// Test implements Deduper.
func (x *Exact) Test(key Key, now time.Time) bool {
	s := &x.shards[key.Hi%exactShards]
	e := x.clock.epoch(now)
	s.mu.Lock()
	s.advanceLocked(e)
	seen := s.hasLocked(key)
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
		s.advanceLocked(e)
		s.mu.Unlock()
	}
}

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

// Bytes implements Deduper with an estimate from the number of pairs held.
func (x *Exact) Bytes() int { return x.Len() * bytesPerPair }

func (s *exactShard) advanceLocked(e int64) {
	for n := s.ring.advance(e); n > 0; n-- {
		// A fresh map, not clear(): Go maps never shrink, and memory must
		// follow the live pairs down as well as up.
		s.gens[s.ring.next()] = nil
	}
}

func (s *exactShard) hasLocked(key Key) bool {
	for _, g := range s.gens {
		if _, ok := g[key]; ok {
			return true
		}
	}
	return false
}
