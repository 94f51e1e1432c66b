package sketch

import (
	"crypto/rand"
	"errors"
)

// Hasher derives pair keys with SipHash-2-4 (128-bit output) under a
// 16-byte secret, so that whoever sends user ids cannot tell which ids
// collide: without the secret, crafting pairs that share a key, or a Bloom
// block, is no easier than guessing. It is a small value; copies are
// independent and it is safe for concurrent use.
//
// The zero Hasher is keyed with sixteen zero bytes: valid, but not secret.
type Hasher struct {
	k0, k1 uint64
}

// NewHasher returns the Hasher keyed with secret, read as two
// little-endian 64-bit halves (SipHash's k0 and k1).
func NewHasher(secret [16]byte) Hasher {
	return Hasher{k0: le.Uint64(secret[:8]), k1: le.Uint64(secret[8:])}
}

// NewSecret returns 16 random bytes from crypto/rand.
func NewSecret() [16]byte {
	var s [16]byte
	rand.Read(s[:]) // never fails: it crashes the program if the OS cannot supply
	return s
}

// Secret returns the secret h was made with.
func (h Hasher) Secret() [16]byte {
	var s [16]byte
	le.PutUint64(s[:8], h.k0)
	le.PutUint64(s[8:], h.k1)
	return s
}

// Key returns the key of the pair (campaign, user): the keyed hash of the
// length-prefixed pair, so ("ab", "c") and ("a", "bc") differ. It does not
// allocate while the two ids together stay under 510 bytes.
func (h Hasher) Key(campaign, user []byte) Key { return keyOf(h, true, campaign, user) }

// KeyString is Key for string ids.
func (h Hasher) KeyString(campaign, user string) Key { return keyOf(h, true, campaign, user) }

// ErrSecretInUse is returned by SetSecret on a window that has been
// touched: its pairs were keyed with the old secret.
var ErrSecretInUse = errors.New("sketch: cannot change the secret of a window in use")

// Hasher implements Deduper.
func (b *Bloom) Hasher() Hasher { return b.hasher }

// Secret returns the secret of b's Hasher.
func (b *Bloom) Secret() [16]byte { return b.hasher.Secret() }

// SetSecret implements Deduper.
func (b *Bloom) SetSecret(secret [16]byte) error {
	for i := range b.shards {
		if !b.shards[i].untouched() {
			return ErrSecretInUse
		}
	}
	b.hasher, b.opts.Secret = NewHasher(secret), secret
	return nil
}

// untouched reports whether the shard holds no pair: a secret can change
// only while no key hashed with the old one is kept.
func (s *bloomShard) untouched() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.curSub.n == 0 && s.live == 0
}

// Hasher implements Deduper.
func (x *Exact) Hasher() Hasher { return x.hasher }

// Secret returns the secret of x's Hasher.
func (x *Exact) Secret() [16]byte { return x.hasher.Secret() }

// SetSecret implements Deduper.
func (x *Exact) SetSecret(secret [16]byte) error {
	for i := range x.shards {
		s := &x.shards[i]
		s.mu.Lock()
		untouched := s.ring.epoch == noEpoch
		s.mu.Unlock()
		if !untouched {
			return ErrSecretInUse
		}
	}
	x.hasher, x.opts.Secret = NewHasher(secret), secret
	return nil
}
