package sketch

import (
	"fmt"
	"testing"
	"time"
)

// TestExactIdleShardWindow: a pair alone in its shard, with no other
// traffic, is seen until TTL after it was counted however the shard is
// brought forward (an Advance at every slice boundary, or one lazy jump on
// the next look-up), and forgotten after TTL + TTL/K.
func TestExactIdleShardWindow(t *testing.T) {
	const ttl, slices = time.Hour, 6
	slice := ttl / slices
	for _, tc := range []struct {
		name    string
		advance bool // call Advance at every slice boundary before looking up
	}{
		{"advance at each boundary", true},
		{"lazy rotation only", false},
	} {
		for _, offset := range []time.Duration{0, time.Nanosecond, slice / 2, slice - time.Nanosecond} {
			t.Run(fmt.Sprintf("%s/offset=%s", tc.name, offset), func(t *testing.T) {
				x, err := NewExact(Options{TTL: ttl, Slices: slices})
				if err != nil {
					t.Fatal(err)
				}
				at := t0.Truncate(slice).Add(offset)
				if x.TestAndAdd(camp, user(1), at) {
					t.Fatal("first sight: got seen, want new")
				}
				advanceTo := func(end time.Time) {
					if !tc.advance {
						return
					}
					for b := at.Truncate(slice).Add(slice); !b.After(end); b = b.Add(slice) {
						x.Advance(b)
					}
					x.Advance(end)
				}
				last := at.Add(ttl - time.Nanosecond)
				advanceTo(last)
				if got := x.Len(); got != 1 {
					t.Fatalf("Len at TTL-1ns: got %d, want 1", got)
				}
				if !x.Test(camp, user(1), last) {
					t.Fatal("Test at TTL-1ns after counting: got not seen, want seen")
				}
				gone := at.Add(ttl + slice + time.Nanosecond)
				advanceTo(gone)
				if x.Test(camp, user(1), gone) {
					t.Fatal("Test at TTL+TTL/K+1ns after counting: got seen, want forgotten")
				}
				if got := x.Len(); got != 0 {
					t.Fatalf("Len at TTL+TTL/K+1ns: got %d, want 0", got)
				}
			})
		}
	}
}
