package sketch

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/dchest/siphash"
)

var (
	secretA = [16]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	secretB = [16]byte{15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0}
)

// TestHasherIsSipHash pins the key to SipHash-2-4-128 of the
// length-prefixed pair, keyed by the secret's two little-endian halves, and
// to the value of one pair: a change would orphan every persisted key.
func TestHasherIsSipHash(t *testing.T) {
	h := NewHasher(secretA)
	for _, tc := range []struct{ c, u string }{
		{"c", "u"},
		{"campaign-1", "0b7c4a9e-3f1d-4c2a-9d8e-6a5b4c3d2e1f"}, // a UUID user
		{"", "x"},
		{"c", string(make([]byte, 300))},           // the 512-byte stack buffer
		{"c", string(make([]byte, 2*maxStackKey))}, // the heap
	} {
		enc := binary.LittleEndian.AppendUint16(nil, uint16(len(tc.c)))
		enc = append(append(enc, tc.c...), tc.u...)
		lo, hi := siphash.Hash128(0x0706050403020100, 0x0f0e0d0c0b0a0908, enc)
		if got, want := h.KeyString(tc.c, tc.u), (Key{Lo: lo, Hi: hi}); got != want {
			t.Fatalf("KeyString(%q, %d-byte user): got %v, want %v", tc.c, len(tc.u), got, want)
		}
		if got, want := h.Key([]byte(tc.c), []byte(tc.u)), h.KeyString(tc.c, tc.u); got != want {
			t.Fatalf("Key and KeyString differ for %q: %v vs %v", tc.c, got, want)
		}
	}
	if got, want := h.KeyString("c", "u"), (Key{Lo: 0x3289dba603113e1d, Hi: 0xee532f7013e71216}); got != want {
		t.Fatalf("key of (c, u) under secretA: got %#x, want %#x", got, want)
	}
}

func TestHasherSecrets(t *testing.T) {
	a, a2, b := NewHasher(secretA), NewHasher(secretA), NewHasher(secretB)
	if a.Secret() != secretA {
		t.Fatalf("Secret: got %x, want %x", a.Secret(), secretA)
	}
	for i := range 1000 {
		u := user(i)
		if a.Key(camp, u) != a2.Key(camp, u) {
			t.Fatalf("user %d: one secret gives two keys", i)
		}
		if a.Key(camp, u) == b.Key(camp, u) {
			t.Fatalf("user %d: two secrets give one key", i)
		}
		if a.Key(camp, u) == KeyOf(camp, u) {
			t.Fatalf("user %d: the keyed hash equals the unkeyed one", i)
		}
	}
	if a.KeyString("ab", "c") == a.KeyString("a", "bc") {
		t.Fatal("(ab, c) and (a, bc) must have different keys")
	}
	if s1, s2 := NewSecret(), NewSecret(); s1 == s2 || s1 == ([16]byte{}) {
		t.Fatalf("NewSecret: %x then %x", s1, s2)
	}
}

// TestWindowSecret: Options.Secret keys the window, a zero one is drawn at
// random, the wrappers hash with the window's Hasher, and SetSecret works
// only before the first pair.
func TestWindowSecret(t *testing.T) {
	for _, mode := range []string{"bloom", "exact"} {
		t.Run(mode, func(t *testing.T) {
			o := smallOpts
			o.Secret = secretA
			d := newDeduper(t, mode, o)
			if got := d.Hasher().Secret(); got != secretA {
				t.Fatalf("Options.Secret %x, window's %x", secretA, got)
			}
			o.Secret = [16]byte{}
			r1, r2 := newDeduper(t, mode, o), newDeduper(t, mode, o)
			if s := r1.Hasher().Secret(); s == ([16]byte{}) || s == r2.Hasher().Secret() {
				t.Fatalf("zero Options.Secret: windows got %x and %x, want two random secrets", s, r2.Hasher().Secret())
			}
			if err := r1.SetSecret(secretB); err != nil {
				t.Fatalf("SetSecret on a fresh window: %v", err)
			}
			if got := r1.Hasher().Secret(); got != secretB {
				t.Fatalf("after SetSecret: secret %x, want %x", got, secretB)
			}
			r1.TestAndAdd(camp, user(1), t0)
			if err := r1.SetSecret(secretA); !errors.Is(err, ErrSecretInUse) {
				t.Fatalf("SetSecret after a pair: got %v, want ErrSecretInUse", err)
			}
			if b, ok := r1.(*Bloom); ok {
				if !b.TestKey(NewHasher(secretB).Key(camp, user(1)), t0) {
					t.Fatal("TestAndAdd did not key the pair with the window's Hasher")
				}
				if b.TestKey(KeyOf(camp, user(1)), t0) {
					t.Fatal("the unkeyed key of the pair is in the window")
				}
			}
		})
	}
}

// TestStateNeedsItsSecret: a Bloom state holds keys, not the secret, so a
// window keyed otherwise finds none of its pairs. Whoever persists a state
// keeps the secret beside it.
func TestStateNeedsItsSecret(t *testing.T) {
	d := newDeduper(t, "bloom", persistOpts)
	for i := range 100 {
		d.TestAndAdd(camp, user(i), t0)
	}
	o := persistOpts
	o.Secret = secretB
	r := restore(t, "bloom", o, state(t, d))
	for i := range 100 {
		if r.Test(camp, user(i), t0) {
			t.Fatalf("user %d found by a window with another secret", i)
		}
	}
	if r := restore(t, "bloom", persistOpts, state(t, d)); !r.Test(camp, user(0), t0) {
		t.Fatal("user 0 not found by a window with the state's secret")
	}
}
