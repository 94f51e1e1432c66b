//go:build !race

package sketch

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
)

// A statistical test of one goroutine, which the race detector would only
// slow down tenfold: make test runs it in its plain pass.

// TestFalsePositiveRate fills all K+1 generations with Capacity/K distinct
// pairs each, the worst case within capacity, then measures the share of
// 1M fresh pairs taken for repeats. The default layout (10M pairs, 256
// shards) is the largest case.
func TestFalsePositiveRate(t *testing.T) {
	const fresh = 1_000_000
	for _, tc := range []struct {
		capacity int
		p        float64
	}{
		{1_000_000, 0.01},
		{1_000_000, 0.001},
		{1_000_000, 0.0001}, // k > 12: positions past the key's twelve fields
		{10_000_000, 0.001},
	} {
		t.Run(fmt.Sprintf("capacity=%d/p=%g", tc.capacity, tc.p), func(t *testing.T) {
			if testing.Short() && tc.capacity > 1_000_000 {
				t.Skip("fills 11.7M pairs")
			}
			const ttl, slices = time.Hour, 6
			b, err := NewBloom(Options{TTL: ttl, Slices: slices, Capacity: tc.capacity, FalsePositiveRate: tc.p})
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(uint64(tc.capacity), 42))
			var now time.Time
			live := 0
			for s := 0; s <= slices; s++ {
				now = t0.Add(time.Duration(s) * ttl / slices)
				for i := 0; i < tc.capacity/slices; i++ {
					b.TestAndAddKey(Key{Lo: r.Uint64(), Hi: r.Uint64()}, now)
					live++
				}
			}
			hits := 0
			for i := 0; i < fresh; i++ {
				if b.TestKey(KeyOfString("fresh", strconv.Itoa(i)), now) {
					hits++
				}
			}
			got := float64(hits) / fresh
			t.Logf("target %g: measured %.5f over %d fresh pairs with %d pairs live, %.1f bits/pair", tc.p, got, fresh, live, float64(b.Bytes()*8)/float64(tc.capacity))
			if got > tc.p {
				t.Fatalf("false-positive rate %.5f > target %g", got, tc.p)
			}
		})
	}
}
