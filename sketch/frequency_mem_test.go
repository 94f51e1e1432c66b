//go:build !race

package sketch

import (
	"runtime"
	"testing"
	"time"
)

// TestFrequencyExactBytesMatchesHeap fills fresh counters and holds Bytes
// within 20% of the heap they take (HeapAlloc after full collections
// before and after; the race detector, which pads allocations, is
// excluded by the build tag): pairs with one cell, the common case, and
// pairs exposed every few minutes for two days, whose cells merge.
func TestFrequencyExactBytesMatchesHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("fills hundreds of thousands of pairs")
	}
	for _, tc := range []struct {
		name         string
		pairs, cells int
		step         time.Duration
	}{
		{"one exposure", 400_000, 1, 0},
		{"three an hour apart", 200_000, 3, time.Hour},
		{"every 7 minutes for two days", 2_000, 400, 7 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := heapAlloc()
			x := NewFrequencyExact()
			for c := range tc.cells {
				at := freqBase.Add(time.Duration(c) * tc.step)
				for p := range tc.pairs {
					x.Add(fkey(p), at)
				}
			}
			held := int64(heapAlloc()) - int64(before)
			got := x.Bytes()
			runtime.KeepAlive(x)
			t.Logf("%d pairs: heap %d bytes (%.1f per pair), Bytes %d (%.1f per pair), ratio %.3f",
				tc.pairs, held, float64(held)/float64(tc.pairs), got, float64(got)/float64(tc.pairs), float64(got)/float64(held))
			if d := float64(got-held) / float64(held); d < -0.2 || d > 0.2 {
				t.Fatalf("Bytes %d is %.1f%% off the heap held, %d; want within 20%%", got, 100*d, held)
			}
		})
	}
}
