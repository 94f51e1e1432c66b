//go:build !race

package sketch

import "testing"

// TestHasherDoesNotAllocate pins the keyed hash at zero allocations for a
// typical pair (a UUID user, 128-byte buffer) and a long one (512-byte
// buffer), from bytes and from strings.
func TestHasherDoesNotAllocate(t *testing.T) {
	h := NewHasher(NewSecret())
	c := []byte("campaign-1")
	for _, u := range [][]byte{[]byte("0b7c4a9e-3f1d-4c2a-9d8e-6a5b4c3d2e1f"), make([]byte, 200)} {
		us, cs := string(u), string(c)
		if n := testing.AllocsPerRun(100, func() { h.Key(c, u) }); n != 0 {
			t.Fatalf("Key of a %d-byte user allocates %v times per call, want 0", len(u), n)
		}
		if n := testing.AllocsPerRun(100, func() { h.KeyString(cs, us) }); n != 0 {
			t.Fatalf("KeyString of a %d-byte user allocates %v times per call, want 0", len(u), n)
		}
	}
}
