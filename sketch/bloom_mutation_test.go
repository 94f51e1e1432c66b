package sketch

import (
	"math"
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
