//go:build !race

package sketch

import (
	"fmt"
	"testing"
)

// TestKeyBufferEdgesDoNotAllocate: a pair whose encoding (2 length bytes,
// campaign, user) fits in maxStackKey bytes hashes without a heap
// allocation, whichever of the two ids is the long one, right up to the
// edges of the stack buffers; a longer pair still hashes like any other.
func TestKeyBufferEdgesDoNotAllocate(t *testing.T) {
	h := NewHasher(NewSecret())
	for _, n := range []int{127, 128, 129, maxStackKey - 1, maxStackKey} {
		long := make([]byte, n-2-10)
		short := []byte("campaign-1")
		for _, pair := range [][2][]byte{{short, long}, {long, short}} {
			c, u := pair[0], pair[1]
			t.Run(fmt.Sprintf("%d bytes/campaign %d", n, len(c)), func(t *testing.T) {
				if a := testing.AllocsPerRun(50, func() { h.Key(c, u) }); a != 0 {
					t.Errorf("Key allocates %v times per call, want 0", a)
				}
				if a := testing.AllocsPerRun(50, func() { KeyOf(c, u) }); a != 0 {
					t.Errorf("KeyOf allocates %v times per call, want 0", a)
				}
			})
		}
	}
}
