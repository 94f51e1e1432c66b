//go:build !race

package sketch

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// TestExactBytesMatchesHeap fills fresh windows with distinct pairs and
// holds Bytes within 20% of the heap they take, measured as HeapAlloc after
// full collections before and after the fill (the race detector, which
// pads allocations, is excluded by the build tag). The fills are seeded, so
// each run holds the same pairs; the pairs are spread evenly over the K
// slices of a TTL, as in steady state. Each row logs the bytes per pair
// measured, which docs/DESIGN.md quotes.
func TestExactBytesMatchesHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a million pairs")
	}
	for _, tc := range []struct {
		name  string
		pairs int
		user  func(r *rand.Rand, dst []byte) []byte
	}{
		// The typical case: an advertising id, a short campaign id.
		{"uuid users", 1_000_000, func(r *rand.Rand, dst []byte) []byte {
			dst = appendHex(dst, r.Uint64(), 8)
			dst = appendHex(append(dst, '-'), r.Uint64(), 4)
			dst = appendHex(append(dst, '-', '4'), r.Uint64(), 3)
			dst = appendHex(append(dst, '-', 'a'), r.Uint64(), 3)
			return appendHex(append(dst, '-'), r.Uint64(), 12)
		}},
		// Keys below 16 bytes, from the tiny allocator.
		{"short users", 300_000, func(r *rand.Rand, dst []byte) []byte {
			return appendHex(dst, r.Uint64(), 8)
		}},
		// The longest user ids the API accepts (256 bytes).
		{"longest users", 100_000, func(r *rand.Rand, dst []byte) []byte {
			for range 16 {
				dst = appendHex(dst, r.Uint64(), 16)
			}
			return dst
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const slices = 6
			o := Options{TTL: time.Hour, Slices: slices}
			slice := o.TTL / slices
			start := t0.Truncate(slice)
			r := rand.New(rand.NewPCG(1, uint64(tc.pairs)))
			campaigns := make([][]byte, 100)
			for i := range campaigns {
				campaigns[i] = fmt.Appendf(nil, "campaign-%04d", i)
			}
			buf := make([]byte, 0, 512)
			before := heapAlloc()
			x, err := NewExact(o)
			if err != nil {
				t.Fatal(err)
			}
			for i := range tc.pairs {
				at := start.Add(time.Duration(i*slices/tc.pairs) * slice)
				if x.TestAndAdd(campaigns[i%len(campaigns)], tc.user(r, buf[:0]), at) {
					t.Fatalf("pair %d of %d reported seen", i, tc.pairs)
				}
			}
			held := int64(heapAlloc()) - int64(before)
			got := int64(x.Bytes())
			runtime.KeepAlive(x)
			t.Logf("%d pairs: heap %d bytes (%.1f per pair), Bytes %d (%.1f per pair), ratio %.3f",
				tc.pairs, held, float64(held)/float64(tc.pairs), got, float64(got)/float64(tc.pairs), float64(got)/float64(held))
			if d := float64(got-held) / float64(held); d < -0.2 || d > 0.2 {
				t.Fatalf("Bytes %d is %.1f%% off the heap held, %d; want within 20%%", got, 100*d, held)
			}
		})
	}
}

// heapAlloc returns the bytes of live heap objects after full
// collections: the second frees what the first kept for finalizers.
func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// appendHex appends the low n hex digits of v.
func appendHex(dst []byte, v uint64, n int) []byte {
	const hex = "0123456789abcdef"
	for i := n - 1; i >= 0; i-- {
		dst = append(dst, hex[v>>(4*uint(i))&0xf])
	}
	return dst
}
