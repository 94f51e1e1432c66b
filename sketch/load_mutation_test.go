package sketch

import (
	"bytes"
	"testing"
	"time"
)

// TestLoaderMovesEveryShard: Close moves every shard to the newest slice
// gathered, so pairs gathered a TTL and more before it are dropped in all
// shards, not only in the newest pair's.
func TestLoaderMovesEveryShard(t *testing.T) {
	x := newBounded(t, 0)
	l := x.Loader()
	for i := range 100 {
		l.Add(camp, user(i), t0)
	}
	l.Add(camp, user(1000), t0.Add(3*time.Hour))
	l.Close()
	if got := x.Len(); got != 1 {
		t.Fatalf("Len after Close: got %d, want 1 (the pairs 3 TTLs older dropped)", got)
	}
	if !x.Test(camp, user(1000), t0.Add(3*time.Hour)) {
		t.Fatal("the newest pair is not in the window")
	}
}

// TestLoaderLongKeys: pairs whose keys are at and around the largest the
// loader frames (65,535 bytes) are all kept; one of exactly 65,535 bytes is
// gathered like any other, so its slice moves the shards at Close.
func TestLoaderLongKeys(t *testing.T) {
	// pairKey is 2 bytes, then the campaign, then the user.
	long := func(keyLen int) []byte { return bytes.Repeat([]byte("u"), keyLen-2-len(camp)) }
	x := newBounded(t, 0)
	l := x.Loader()
	for _, n := range []int{65534, 65535, 65536, 65537} {
		l.Add(camp, long(n), t0)
	}
	l.Close()
	if got := x.Len(); got != 4 {
		t.Fatalf("Len after Close: got %d, want 4", got)
	}
	for _, n := range []int{65534, 65535, 65536, 65537} {
		if !x.Test(camp, long(n), t0) {
			t.Fatalf("pair with a %d-byte key not found after Close", n)
		}
	}

	x = newBounded(t, 0)
	l = x.Loader()
	for i := range 100 {
		l.Add(camp, user(i), t0)
	}
	l.Add(camp, long(65535), t0.Add(3*time.Hour))
	l.Close()
	if got := x.Len(); got != 1 {
		t.Fatalf("Len after Close: got %d, want 1: the 65,535-byte pair's slice moves every shard", got)
	}
}
