package sketch

import (
	"fmt"
	"testing"
	"time"
)

// TestWindowBoundsAroundEpoch is TestWindowBounds for arrivals just before
// and at the Unix epoch, where slice numbers turn negative: a slice must
// still start on a multiple of TTL/K, so a pair counted inside a negative
// slice is forgotten by TTL+TTL/K like any other.
func TestWindowBoundsAroundEpoch(t *testing.T) {
	const ttl, slices = time.Hour, 6
	slice := ttl / slices
	epoch := time.Unix(0, 0)
	for _, mode := range []string{"bloom", "exact"} {
		for _, offset := range []time.Duration{-slice - time.Nanosecond, -slice, -slice / 2, -time.Nanosecond, 0, slice / 2} {
			t.Run(fmt.Sprintf("%s/offset=%s", mode, offset), func(t *testing.T) {
				d := newDeduper(t, mode, Options{TTL: ttl, Slices: slices, Capacity: 10000})
				at := epoch.Add(offset)
				c, u := camp, user(1)
				if d.TestAndAdd(c, u, at) {
					t.Fatal("first sight reported as seen")
				}
				for _, dt := range []time.Duration{0, time.Second, ttl / 2, ttl - time.Nanosecond} {
					if !d.Test(c, u, at.Add(dt)) {
						t.Fatalf("repeat %s after counting: not seen, want seen", dt)
					}
				}
				if d.Test(c, u, at.Add(ttl+slice+time.Nanosecond)) {
					t.Fatal("repeat after ttl+ttl/slices: seen, want forgotten")
				}
			})
		}
	}
}
