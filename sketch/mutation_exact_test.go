package sketch

import (
	"errors"
	"hash/maphash"
	"testing"
	"time"
)

// TestExactMemModel pins the heap model behind Exact.Bytes at the edges of
// each of its cases: the allocator's size classes and whole pages, the tiny
// allocator's keys, a map of one group, one table growing by doubling, and
// the expected number of tables of a split directory, which is Σ
// 2^d·(P_{d−1} − P_d) over the depths d (the values were computed apart
// from the package, from that formula). TestExactBytesMatchesHeap holds
// the model to the real heap, but only without -short.
func TestExactMemModel(t *testing.T) {
	for _, c := range []struct{ n, want int }{
		{1, 8}, {8, 8}, {9, 16}, {16, 16}, {17, 24}, {200, 208},
		{28673, 32768}, {30000, 32768}, {32768, 32768}, // the last class
		{32769, 40960}, {40960, 40960}, {40961, 49152}, // whole pages
	} {
		if got := allocBytes(c.n); got != c.want {
			t.Errorf("allocBytes(%d) = %d, want %d", c.n, got, c.want)
		}
	}
	for _, c := range []struct{ n, want int }{{0, 0}, {1, 1}, {15, 15}, {16, 16}, {17, 24}} {
		if got := keyBytes(c.n); got != c.want {
			t.Errorf("keyBytes(%d) = %d, want %d", c.n, got, c.want)
		}
	}
	// A group is 8 control bytes and 8 slots of 24 bytes: 200, allocated
	// as 208. A table adds its struct (32) and a directory entry (8).
	for _, c := range []struct{ n, want int }{
		{0, 0},
		{1, 48 + 208}, {8, 48 + 208}, // one group
		{9, 48 + 32 + 8 + 416}, {14, 48 + 32 + 8 + 416}, // 16 slots, 14 usable
		{15, 48 + 32 + 8 + 896}, {28, 48 + 32 + 8 + 896}, // 32 slots
		{29, 48 + 32 + 8 + 1792},   // 64 slots
		{896, 48 + 32 + 8 + 27264}, // one full table of 1024 slots
		{897, 48 + 2*(32+8+27264)}, // split in two
		{1792, 81445}, {2000, 109264}, {100_000, 3495021},
	} {
		if got := mapBytes(c.n); got != c.want {
			t.Errorf("mapBytes(%d) = %d, want %d", c.n, got, c.want)
		}
	}
}

// TestExactBytesOfPairs: Bytes adds each generation's keys to its map's
// size. A pair of "campaign" and "user-1" is a 16-byte key (length prefix,
// campaign, user) in a one-group map; one of 20 bytes takes a 24-byte
// block.
func TestExactBytesOfPairs(t *testing.T) {
	x := newBounded(t, 0)
	if got := x.Bytes(); got != 0 {
		t.Fatalf("Bytes of an empty window: %d, want 0", got)
	}
	x.TestAndAdd(camp, user(1), t0)
	if got := x.Bytes(); got != 16+256 {
		t.Fatalf("Bytes with one 16-byte pair: %d, want %d", got, 16+256)
	}
	// A 20-byte pair in another shard, so in another map.
	shard := func(u []byte) uint64 { return maphash.Bytes(x.seed, pairKey(nil, camp, u)) % exactShards }
	u := []byte("user-10000")
	for shard(u) == shard(user(1)) {
		u[len(u)-1]++
	}
	x.TestAndAdd(camp, u, t0)
	if got, want := x.Bytes(), 16+256+24+256; got != want {
		t.Fatalf("Bytes with a 16- and a 20-byte pair in two shards: %d, want %d", got, want)
	}
}

// TestExactRotationsCount: a shard's first touch recycles nothing; later,
// each slice it moves recycles one generation, and a jump of more than
// K+1 slices recycles all K+1, not more.
func TestExactRotationsCount(t *testing.T) {
	x := newBounded(t, 0) // 6 slices of 10 minutes, 7 generations
	slice := 10 * time.Minute
	start := t0.Truncate(slice)
	for _, step := range []struct {
		at   time.Duration
		want uint64
	}{
		{0, 0},                      // first touch
		{slice + time.Minute, 1},    // one slice on
		{3 * slice, 3},              // two more
		{3*slice + time.Minute, 3},  // the same slice
		{3*slice + 2*time.Hour, 10}, // 12 slices on: all 7 generations
	} {
		x.Test(camp, user(1), start.Add(step.at))
		if got := x.Rotations(); got != step.want {
			t.Fatalf("after a look-up at start+%s: %d rotations, want %d", step.at, got, step.want)
		}
	}
	// Advance brings the other shards to the slice: their first touch.
	x.Advance(start.Add(3*slice + 2*time.Hour))
	if got := x.Rotations(); got != 10 {
		t.Fatalf("after Advance to the same slice: %d rotations, want 10", got)
	}
}

// TestExactRetryAfterEdges: RetryAfter points at the end of the window of
// the oldest slice holding pairs as of the last Advance, the newest slice
// too; once that moment has come, at the next slice boundary.
func TestExactRetryAfterEdges(t *testing.T) {
	slice := 10 * time.Minute
	start := t0.Truncate(slice)
	x := newBounded(t, 0)
	x.TestAndAdd(camp, user(1), start)
	x.Advance(start) // the pair is in the newest generation
	if got, want := x.RetryAfter(start.Add(time.Minute)), 7*slice-time.Minute; got != want {
		t.Fatalf("RetryAfter with pairs only in the newest slice: %s, want %s", got, want)
	}
	// Seven slices on, the oldest slice has left: the next boundary.
	if got, want := x.RetryAfter(start.Add(7*slice+time.Minute)), slice-time.Minute; got != want {
		t.Fatalf("RetryAfter once the oldest slice has left: %s, want %s", got, want)
	}
}

// TestExactRefusalAdvancesOncePerSlice: a refusal runs Advance only in a
// slice newer than the last Advance's (one sweep of every shard per slice at
// most). RetryAfter shows which Advance ran last: one that saw the window
// empty leaves it at the next boundary, one that saw a pair at that pair's
// expiry.
func TestExactRefusalAdvancesOncePerSlice(t *testing.T) {
	slice := 10 * time.Minute
	start := t0.Truncate(slice)
	x := newBounded(t, 1)
	x.Advance(start) // the window is empty
	if seen, err := x.TestAndAddLimited(camp, user(1), start.Add(time.Minute)); seen || err != nil {
		t.Fatalf("first pair: seen %v, err %v", seen, err)
	}
	at := start.Add(2 * time.Minute)
	if _, err := x.TestAndAddLimited(camp, user(2), at); !errors.Is(err, ErrFull) {
		t.Fatalf("second pair: got %v, want ErrFull", err)
	}
	if got, want := x.RetryAfter(at), slice-2*time.Minute; got != want {
		t.Fatalf("RetryAfter after a refusal in the slice already advanced: %s, want %s (no new Advance)", got, want)
	}
	at = start.Add(slice + time.Minute)
	if _, err := x.TestAndAddLimited(camp, user(3), at); !errors.Is(err, ErrFull) {
		t.Fatalf("third pair: got %v, want ErrFull", err)
	}
	if got, want := x.RetryAfter(at), 7*slice-slice-time.Minute; got != want {
		t.Fatalf("RetryAfter after a refusal in a newer slice: %s, want %s (Advance saw the first pair)", got, want)
	}
}
