package tracker

import (
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// campaignShards spreads campaigns so that a creation copies 1/256th of the
// table, not all of it.
const campaignShards = 256

// campaignTable maps ids to campaigns. Lookups load an immutable map
// through an atomic pointer: no lock, no shared write, no contention however
// many requests read at once. Creations copy one shard's map under that
// shard's mutex and publish the copy. It is safe for concurrent use.
type campaignTable struct {
	seed   maphash.Seed
	count  atomic.Int64  // campaigns added, or reserved by an add in progress
	next   atomic.Uint32 // index of the next campaign added
	shards [campaignShards]campaignShard

	// The campaigns ordered by id, for paged listing: rebuilt by the first
	// list after a campaign was published, shared by every list until the
	// next one is.
	published atomic.Uint64 // bumped by every publish
	sortMu    sync.Mutex    // serialises rebuilds of sorted
	sorted    atomic.Pointer[sortedCampaigns]
}

// sortedCampaigns is every campaign published when published read gen,
// ordered by id. It is never modified.
type sortedCampaigns struct {
	gen uint64
	all []*Campaign
}

type campaignShard struct {
	mu sync.Mutex // serialises writers of m; readers never take it
	m  atomic.Pointer[map[string]*Campaign]
	_  [40]byte
}

// newCampaignTable returns an empty table.
func newCampaignTable() *campaignTable {
	return &campaignTable{seed: maphash.MakeSeed()}
}

func (t *campaignTable) shard(id []byte) *campaignShard {
	return &t.shards[maphash.Bytes(t.seed, id)%campaignShards]
}

// get returns the campaign with the given id, or nil.
func (t *campaignTable) get(id []byte) *Campaign {
	m := t.shard(id).m.Load()
	if m == nil {
		return nil
	}
	return (*m)[string(id)]
}

// add registers c, giving it the next index, unless its id is taken or the
// table holds max campaigns. A slot is reserved before the insert, so concurrent adds
// never overshoot the limit. persist, if not nil, runs once the add is
// sure to succeed and before c is visible; its error cancels the add.
func (t *campaignTable) add(c *Campaign, max int, persist func(*Campaign) error) error {
	if t.count.Add(1) > int64(max) {
		t.count.Add(-1)
		return errCampaignLimit
	}
	s := t.shard([]byte(c.ID))
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.m.Load(); old != nil {
		if _, ok := (*old)[c.ID]; ok {
			t.count.Add(-1)
			return errCampaignExists
		}
	}
	c.index = t.next.Add(1) - 1
	if persist != nil {
		if err := persist(c); err != nil {
			t.count.Add(-1)
			return err
		}
	}
	s.publishLocked(c)
	t.published.Add(1)
	return nil
}

// restore puts back a campaign read from disk, with its index, at
// start-up. It ignores the limit: what was accepted once stays.
func (t *campaignTable) restore(c *Campaign) error {
	s := t.shard([]byte(c.ID))
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.m.Load(); old != nil {
		if _, ok := (*old)[c.ID]; ok {
			return fmt.Errorf("campaign %q restored twice", c.ID)
		}
	}
	t.count.Add(1)
	if c.index >= t.next.Load() {
		t.next.Store(c.index + 1)
	}
	s.publishLocked(c)
	t.published.Add(1)
	return nil
}

// replace puts c, a new version of the campaign with its id, in the old
// one's place, or does nothing and returns false if there is none. change
// runs under the shard's lock, so the changes of one campaign are
// serialised; it returns the new version, or an error that cancels the
// replacement, as does an error of persist, which runs before the new
// version is visible.
func (t *campaignTable) replace(id []byte, change func(old *Campaign) (*Campaign, error), persist func(*Campaign) error) (*Campaign, error) {
	s := t.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.getLocked(id)
	if old == nil {
		return nil, nil
	}
	c, err := change(old)
	if err != nil {
		return nil, err
	}
	if persist != nil {
		if err := persist(c); err != nil {
			return nil, err
		}
	}
	s.publishLocked(c)
	t.published.Add(1)
	return c, nil
}

// remove takes the campaign with the given id out of the table, or
// returns nil if there is none. persist runs before it is gone; its error
// cancels the removal.
func (t *campaignTable) remove(id []byte, persist func(*Campaign) error) (*Campaign, error) {
	s := t.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.getLocked(id)
	if c == nil {
		return nil, nil
	}
	if persist != nil {
		if err := persist(c); err != nil {
			return nil, err
		}
	}
	m := s.m.Load()
	next := make(map[string]*Campaign, len(*m))
	for k, v := range *m {
		if k != c.ID {
			next[k] = v
		}
	}
	s.m.Store(&next)
	t.count.Add(-1)
	t.published.Add(1)
	return c, nil
}

// getLocked returns the shard's campaign with the given id, or nil.
func (s *campaignShard) getLocked(id []byte) *Campaign {
	if m := s.m.Load(); m != nil {
		return (*m)[string(id)]
	}
	return nil
}

// publishLocked publishes a copy of the shard's map with c added, or put
// in the place of the campaign of its id.
func (s *campaignShard) publishLocked(c *Campaign) {
	old := s.m.Load()
	var next map[string]*Campaign
	if old == nil {
		next = make(map[string]*Campaign, 1)
	} else {
		next = make(map[string]*Campaign, len(*old)+1)
		for k, v := range *old {
			next[k] = v
		}
	}
	next[c.ID] = c
	s.m.Store(&next)
}

// ordered returns every campaign ordered by id, including every one whose
// add returned before the call. The slice is shared: callers must not
// modify it.
func (t *campaignTable) ordered() []*Campaign {
	if s := t.sorted.Load(); s != nil && s.gen == t.published.Load() {
		return s.all
	}
	t.sortMu.Lock()
	defer t.sortMu.Unlock()
	gen := t.published.Load() // before the scan: a later publish forces another rebuild
	if s := t.sorted.Load(); s != nil && s.gen == gen {
		return s.all
	}
	all := t.list()
	t.sorted.Store(&sortedCampaigns{gen: gen, all: all})
	return all
}

// pageOf returns the items of all (ordered by the id that id returns)
// whose ids start with prefix and sort strictly after after, at most limit
// of them, and whether more such follow. Both stores page with it, so they
// page alike.
func pageOf[T any](all []T, id func(T) string, prefix, after string, limit int) ([]T, bool) {
	find := func(s string) int {
		i, _ := slices.BinarySearchFunc(all, s, func(c T, s string) int { return strings.Compare(id(c), s) })
		return i
	}
	i := find(after)
	if i < len(all) && id(all[i]) == after {
		i++
	}
	i = max(i, find(prefix)) // ids with the prefix are a run from the first ≥ it
	end := i
	for end < len(all) && end-i < limit && strings.HasPrefix(id(all[end]), prefix) {
		end++
	}
	return all[i:end], end < len(all) && strings.HasPrefix(id(all[end]), prefix)
}

// list returns every campaign ordered by id, in a new slice.
func (t *campaignTable) list() []*Campaign {
	var all []*Campaign
	for i := range t.shards {
		if m := t.shards[i].m.Load(); m != nil {
			for _, c := range *m {
				all = append(all, c)
			}
		}
	}
	slices.SortFunc(all, func(a, b *Campaign) int { return strings.Compare(a.ID, b.ID) })
	return all
}

// ValidID reports whether id can name a campaign: it matches ^[A-Za-z0-9._-]{1,64}$ and is not a
// path segment of its own (. or ..), so it can be used in a URL verbatim.
func ValidID(id []byte) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	if string(id) == "." || string(id) == ".." {
		return false
	}
	for _, c := range id {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
