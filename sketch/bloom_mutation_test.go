package sketch

import (
	"bytes"
	"math"
	"math/bits"
	"testing"
	"time"
)

// TestBloomShardCount: a Bloom takes one shard per shardTarget pairs per
// sub-filter's share of the capacity, rounded down to a power of two, with
// the share rounded up: with the default 6 slices (8 sub-filters per TTL),
// 8·4095 pairs give a share of 4095, one shard; 8·4096 give 4096, two; one
// pair more than 8·4095 rounds its share up to 4096.
func TestBloomShardCount(t *testing.T) {
	for _, c := range []struct {
		capacity, shards int
	}{
		{8 * 2048, 1},
		{8*4095 - 1, 1},
		{8 * 4095, 1},
		{8*4095 + 1, 2},
		{8 * 4096, 2},
	} {
		b, err := NewBloom(Options{Capacity: c.capacity})
		if err != nil {
			t.Fatal(err)
		}
		if got := b.Shards(); got != c.shards {
			t.Errorf("Capacity %d: %d shards, want %d", c.capacity, got, c.shards)
		}
	}
}

// TestBloomPoolHoldsTwoDeviations: each shard's pool is sized for its mean
// share c of the capacity plus two standard deviations, 2√c: its
// sub-filters before the clock closes any (Slots − K − 3 of them, see Pool)
// take at least c + 2√c pairs, and no more than one sub-filter's Load past
// it.
func TestBloomPoolHoldsTwoDeviations(t *testing.T) {
	for _, o := range []Options{
		{Capacity: 1000},
		{Capacity: 100_000, Slices: 12},
		{Capacity: 3_000_000, Slices: 3},
	} {
		b, err := NewBloom(o)
		if err != nil {
			t.Fatal(err)
		}
		o = o.withDefaults()
		c := float64(o.Capacity) / float64(b.Shards())
		need := c + 2*math.Sqrt(c)
		p := b.Pool()
		g := p.Slots - o.Slices - 3
		if held := float64(g * p.Load); held < need || held >= need+float64(p.Load) {
			t.Errorf("%+v: %d shards, pool %+v holds %g pairs before a close by the clock, want [%g, %g)",
				o, b.Shards(), p, held, need, need+float64(p.Load))
		}
	}
}

// TestBloomAddIgnoresTTLOld: Add ignores a pair that is TTL old by the
// shard's newest pair, even exactly TTL old; one a nanosecond younger is
// kept. Capacity 1000 makes one shard, so the pairs share it.
func TestBloomAddIgnoresTTLOld(t *testing.T) {
	const ttl = time.Hour
	b, err := NewBloom(Options{TTL: ttl, Capacity: 1000, Secret: [16]byte{1}})
	if err != nil {
		t.Fatal(err)
	}
	if b.Shards() != 1 {
		t.Fatalf("%d shards, want 1", b.Shards())
	}
	now := time.Unix(1_000_000, 0)
	b.Add(camp, user(0), now)
	b.Add(camp, user(1), now.Add(-ttl))
	b.Add(camp, user(2), now.Add(-ttl+time.Nanosecond))
	if b.Test(camp, user(1), now) {
		t.Error("pair added exactly TTL before the newest: seen, want ignored")
	}
	if !b.Test(camp, user(2), now) {
		t.Error("pair added TTL-1ns before the newest: not seen, want kept")
	}
}

// newOneShardBloom returns a Bloom of one shard (Capacity 1000), TTL 1h in
// 6 slices, with a fixed secret so its false positives are repeatable.
func newOneShardBloom(t *testing.T) *Bloom {
	t.Helper()
	b, err := NewBloom(Options{TTL: time.Hour, Capacity: 1000, Secret: [16]byte{1}})
	if err != nil {
		t.Fatal(err)
	}
	if b.Shards() != 1 {
		t.Fatalf("%d shards, want 1", b.Shards())
	}
	return b
}

// TestBloomSliceBoundaries: the open sub-filter closes when a pair arrives
// a full slice after its first, and a closed sub-filter is freed once its
// last pair is exactly TTL old; a pair Add-ed at the last instant of a
// closed sub-filter's span goes into it and is freed with it.
func TestBloomSliceBoundaries(t *testing.T) {
	const ttl, slice = time.Hour, time.Hour / 6
	b := newOneShardBloom(t)
	a := time.Unix(1_000_000, 0)
	b.Add(camp, user(0), a)
	b.Add(camp, user(1), a.Add(slice)) // closes [a, a]
	b.Add(camp, user(2), a)            // into the closed sub-filter
	for i := range 3 {
		if !b.Test(camp, user(i), a.Add(ttl-time.Nanosecond)) {
			t.Errorf("user %d: not seen TTL-1ns after the closed sub-filter's last pair, want seen", i)
		}
	}
	for i, want := range []bool{false, true, false} {
		if got := b.Test(camp, user(i), a.Add(ttl)); got != want {
			t.Errorf("user %d: seen %v exactly TTL after the closed sub-filter's last pair, want %v", i, got, want)
		}
	}
}

// TestBloomRingWraps: with more sub-filters closed than the pool has
// slots, the ring of closed sub-filters wraps around; once all have
// expired, a pair Add-ed inside the span of a freed one goes into the
// open sub-filter, not into the freed slot, and is seen.
func TestBloomRingWraps(t *testing.T) {
	const ttl, slice = time.Hour, time.Hour / 6
	b := newOneShardBloom(t)
	slots := b.Pool().Slots - 1 // closed sub-filters at most
	a := time.Unix(1_000_000, 0)
	// One pair per slice: each closes the one before it.
	for i := range slots + 2 {
		at := a.Add(time.Duration(i) * slice)
		if b.TestAndAdd(camp, user(i), at) {
			t.Fatalf("user %d: fresh pair seen", i)
		}
		if !b.Test(camp, user(i), at) {
			t.Fatalf("user %d: not seen right after it was counted", i)
		}
	}
	end := a.Add(time.Duration(slots+1)*slice + ttl)
	b.Advance(end)
	if st := b.Stats(); st.Live != 0 {
		t.Fatalf("%d sub-filters live after all pairs are TTL old, want 0", st.Live)
	}
	for i := range slots + 2 {
		at := a.Add(time.Duration(i) * slice)
		b.Add(camp, user(1000+i), at)
		if !b.Test(camp, user(1000+i), at) {
			t.Errorf("pair Add-ed at slice %d after every sub-filter expired: not seen, want seen", i)
		}
	}
}

// TestBloomBeforeEpoch: Add on an empty window keeps a pair from long
// before 1970, and a pair as new as the newest is kept while a closed
// sub-filter is live: "TTL old by the newest pair" means by a pair's time,
// never by the zero time.
func TestBloomBeforeEpoch(t *testing.T) {
	const ttl, slice = time.Hour, time.Hour / 6
	b := newOneShardBloom(t)
	a := time.Unix(0, 0).Add(-10 * ttl)
	b.Add(camp, user(0), a)
	if !b.Test(camp, user(0), a) {
		t.Fatal("first pair, 10 TTLs before 1970: not seen, want seen")
	}
	b.Add(camp, user(1), a.Add(slice)) // closes the first sub-filter
	b.Add(camp, user(2), a.Add(slice))
	if !b.Test(camp, user(2), a.Add(slice)) {
		t.Fatal("pair at the newest pair's time, one sub-filter closed: not seen, want seen")
	}
}

// TestBloomOverfills: once every slot holds a live sub-filter and the open
// one is full, each further pair counts once in PoolFull and once in
// Overfills, starting with the first pair past the open one's Load.
func TestBloomOverfills(t *testing.T) {
	b := newOneShardBloom(t)
	p := b.Pool()
	at := time.Unix(1_000_000, 0)
	full := p.Slots * p.Load // every slot (the open one too) at its Load
	added, next := 0, 0
	// addFresh adds distinct pairs until want of them were taken as new
	// (a false positive is not added).
	addFresh := func(want int) {
		for ; added < want; next++ {
			if !b.TestAndAdd(camp, user(next), at) {
				added++
			}
		}
	}
	addFresh(full)
	if st := b.Stats(); st.PoolFull != 0 || st.Overfills != 0 || st.Live != p.Slots {
		t.Fatalf("pool at its Load: %+v, want %d live, PoolFull 0, Overfills 0", st, p.Slots)
	}
	addFresh(full + 1)
	st1 := b.Stats()
	if st1.PoolFull != 1 || st1.Overfills != 1 {
		t.Fatalf("one pair past the pool's Load: PoolFull %d, Overfills %d; want 1, 1", st1.PoolFull, st1.Overfills)
	}
	// Past Load+1 pairs the open sub-filter's rate is computed, not looked
	// up, and still rises with its load.
	addFresh(full + 2)
	st2 := b.Stats()
	if st2.PoolFull != 2 || st2.Overfills != 2 {
		t.Fatalf("two pairs past the pool's Load: PoolFull %d, Overfills %d; want 2, 2", st2.PoolFull, st2.Overfills)
	}
	if !(st2.FalsePositive > st1.FalsePositive) || math.IsInf(st2.FalsePositive, 0) {
		t.Fatalf("FalsePositive %g at Load+2 pairs in the open sub-filter, want above %g at Load+1", st2.FalsePositive, st1.FalsePositive)
	}
}

// TestBloomProbeSetsHashCountBits: a key sets at most HashCount bits of its
// block (positions are drawn with replacement, so two may coincide), and
// most keys set exactly HashCount.
func TestBloomProbeSetsHashCountBits(t *testing.T) {
	for _, o := range []Options{
		{Capacity: 1000, FalsePositiveRate: 0.2}, // few hash positions
		{Capacity: 1000},
		{Capacity: 1000, FalsePositiveRate: 1e-9}, // past the LCG's start
	} {
		o.Secret = [16]byte{1}
		b, err := NewBloom(o)
		if err != nil {
			t.Fatal(err)
		}
		k, exact := int(b.HashCount()), 0
		for i := range 1000 {
			p := b.probe(b.Hasher().Key(camp, user(i)))
			n := 0
			for _, w := range p.mask {
				n += bits.OnesCount64(w)
			}
			if n > k {
				t.Fatalf("FalsePositiveRate %g: key %d sets %d bits, want at most HashCount %d", o.FalsePositiveRate, i, n, k)
			}
			if n == k {
				exact++
			}
		}
		if exact < 500 {
			t.Errorf("FalsePositiveRate %g: %d of 1000 keys set all %d bits, want most", o.FalsePositiveRate, exact, k)
		}
	}
}

// TestBloomBytes: Bytes is the bits of every filter, Shards × Generations
// sub-filters of FilterBits bits, in bytes.
func TestBloomBytes(t *testing.T) {
	for _, c := range []int{1000, 8 * 4096} {
		b, err := NewBloom(Options{Capacity: c})
		if err != nil {
			t.Fatal(err)
		}
		want := b.Shards() * b.Generations() * int(b.FilterBits()) / 8
		if got := b.Bytes(); got != want || want == 0 {
			t.Errorf("Capacity %d: Bytes() = %d, want %d", c, got, want)
		}
	}
}

// TestBloomProbeLayout pins where two keys fall: the block and bits a key
// maps to are part of what a snapshot of the filters stores (see
// persist.go), so a change here would make a build read its predecessor's
// snapshots as holding other pairs. 26 blocks, 24 hash positions: the
// positions from Key.Hi, from Key.Lo and from the LCG all take part.
func TestBloomProbeLayout(t *testing.T) {
	b, err := NewBloom(Options{Capacity: 1000, FalsePositiveRate: 1e-9, Secret: [16]byte{1}})
	if err != nil {
		t.Fatal(err)
	}
	if b.blocks != 26 || b.HashCount() != 24 {
		t.Fatalf("%d blocks, %d hash positions; want 26, 24", b.blocks, b.HashCount())
	}
	for _, c := range []struct {
		key  Key
		want probe
	}{
		{Key{Lo: 0xfedcba9876543210, Hi: 0x123456789abcdef}, probe{off: 200, lead: 7, mask: [blockWords]uint64{0x10000000000200, 0x800000001, 0x100140000000000, 0x10400000680000, 0x4020000080000400, 0x80000800000800, 0x0, 0x42000400002000}}},
		{Key{Lo: 0x8000000000000001, Hi: 0xffffffffffffff00}, probe{off: 104, lead: 7, mask: [blockWords]uint64{0x1000000000000000, 0x2000000000008, 0x4000000080000000, 0x8000024020000000, 0x10020000000000, 0x20, 0x1000000000800000, 0x8000422000002000}}},
	} {
		if got := b.probe(c.key); got != c.want {
			t.Errorf("probe(%+v) = %+v, want %+v", c.key, got, c.want)
		}
	}
}

// TestBloomSnapshotOfWrappedRing: a snapshot taken while the live closed
// sub-filters wrap around the end of the pool restores every pair of the
// last TTL.
func TestBloomSnapshotOfWrappedRing(t *testing.T) {
	const ttl, slice = time.Hour, time.Hour / 6
	b := newOneShardBloom(t)
	slots := b.Pool().Slots - 1
	a := time.Unix(1_000_000, 0)
	n := slots + 3 // one pair per slice: the ring's head is past slots-6
	for i := range n {
		b.TestAndAdd(camp, user(i), a.Add(time.Duration(i)*slice))
	}
	now := a.Add(time.Duration(n-1) * slice)
	var buf bytes.Buffer
	if _, err := b.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	r := newOneShardBloom(t)
	if _, err := r.ReadFrom(&buf); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		at := a.Add(time.Duration(i) * slice)
		if want := now.Sub(at) < ttl; r.Test(camp, user(i), now) != want {
			t.Errorf("restored pair counted %s before the newest: seen %v, want %v", now.Sub(at), !want, want)
		}
	}
}

// TestBloomSubCountSaturates: the open sub-filter's pair count stops at
// 2³¹−1 instead of wrapping negative (bloom.go's `c.n < MaxInt32`), where
// a full pool keeps adding to it: a wrapped count reads as below the Load,
// and the pool-full and overfill counters would stop. 2³¹ adds are out of
// a test's reach, so the count is set just below the bound.
func TestBloomSubCountSaturates(t *testing.T) {
	b := newOneShardBloom(t)
	p := b.Pool()
	at := time.Unix(1_000_000, 0)
	for added, next := 0, 0; added <= p.Slots*p.Load; next++ { // every slot full, and one past
		if !b.TestAndAdd(camp, user(next), at) {
			added++
		}
	}
	s := &b.shards[0]
	s.mu.Lock()
	s.curSub.n = math.MaxInt32 - 1
	s.mu.Unlock()
	for i, next := 0, 1<<30; i < 2; next++ {
		if !b.TestAndAdd(camp, user(next), at) {
			i++
		}
	}
	s.mu.Lock()
	n := s.curSub.n
	s.mu.Unlock()
	if n != math.MaxInt32 {
		t.Fatalf("open sub-filter's count %d after two adds from 2³¹−2, want it held at %d", n, math.MaxInt32)
	}
}
