package sketch

import (
	"hash/maphash"
	"time"
)

// ExactLoader replays many pairs into an Exact window at start-up faster
// than Add: pairs are gathered per shard and slice, then Close builds each
// generation's map once, at its final size, instead of growing it (and
// rehashing it) many times. Until Close the window does not hold the pairs.
// It is not safe for concurrent use, and the window must not be used before
// Close returns.
type ExactLoader struct {
	x      *Exact
	newest int64
	slabs  [exactShards]map[int64]*slab // by slice
}

// slab holds the keys of one shard and slice, each as a 2-byte length and
// the key.
type slab struct {
	keys []byte
	n    int
}

// Loader returns an ExactLoader for x.
func (x *Exact) Loader() *ExactLoader {
	return &ExactLoader{x: x, newest: noEpoch}
}

// Add gathers the pair counted at time at, for Close to add as Exact.Add
// would.
func (l *ExactLoader) Add(campaign, user []byte, at time.Time) {
	var stack [maxStackKey]byte
	k := pairKey(stack[:0], campaign, user)
	if len(k) > 1<<16-1 {
		l.x.Add(campaign, user, at) // cannot be framed; rare enough to take the slow way
		return
	}
	e := l.x.clock.epoch(at)
	l.newest = max(l.newest, e)
	i := maphash.Bytes(l.x.seed, k) % exactShards
	if l.slabs[i] == nil {
		l.slabs[i] = make(map[int64]*slab)
	}
	s := l.slabs[i][e]
	if s == nil {
		s = &slab{}
		l.slabs[i][e] = s
	}
	s.keys = appendDoubling(s.keys, []byte{byte(len(k)), byte(len(k) >> 8)})
	s.keys = append(s.keys, k...)
	s.n++
}

// Close adds every gathered pair to the window: each shard moves to the
// newest slice gathered (as a pair of that slice would move it), and the
// pairs of slices still in the window join their generations; the others
// are dropped. The pairs count against Options.MaxPairs, even beyond it:
// they were counted, so they are kept, and new pairs are refused until
// enough expire.
func (l *ExactLoader) Close() {
	if l.newest == noEpoch {
		return
	}
	x := l.x
	for i := range x.shards {
		s := &x.shards[i]
		s.mu.Lock()
		s.advanceLocked(l.newest, x)
		for e, sl := range l.slabs[i] {
			g, ok := s.ring.slot(e)
			if !ok {
				continue
			}
			if s.gens[g] == nil {
				s.gens[g] = make(map[string]struct{}, sl.n)
			}
			// The keys share one string: one allocation, released with
			// the generation.
			for str := string(sl.keys); len(str) > 0; {
				n := int(str[0]) | int(str[1])<<8
				k := str[2 : 2+n]
				if _, dup := s.gens[g][k]; !dup {
					s.gens[g][k] = struct{}{}
					s.bytes[g] += keyBytes(n)
					x.live.Add(1)
				}
				str = str[2+n:]
			}
		}
		s.mu.Unlock()
		l.slabs[i] = nil
	}
}
