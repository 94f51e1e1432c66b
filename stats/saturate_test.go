package stats

import "testing"

// TestBucketSaturates: a minute's bucket stops at 2³²−1 instead of wrapping
// into the next minute's tag, while the total keeps counting.
func TestBucketSaturates(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start uint64 // the bucket's count before the adds
		adds  int
		want  uint64 // the minute's count after them
	}{
		{"reaches the limit", countMask - 1, 1, countMask},
		{"stays at the limit", countMask - 1, 3, countMask},
		{"already at the limit", countMask, 2, countMask},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Counter
			c.buckets[base%Minutes].Store(uint64(base+minuteBias)<<32 | tc.start)
			for i := 0; i < tc.adds; i++ {
				c.Add(base, base)
			}
			if got := c.At(base); got != tc.want {
				t.Errorf("At(base): got %d, want %d", got, tc.want)
			}
			if got, want := c.Read(base), (Window{LastHour: tc.want, LastDay: tc.want, Total: uint64(tc.adds)}); got != want {
				t.Errorf("Read(base): got %+v, want %+v", got, want)
			}
		})
	}
}
