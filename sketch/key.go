package sketch

import (
	"encoding/binary"
	"math/bits"

	"github.com/dchest/siphash"
)

// Key identifies one (campaign, user) pair by a 128-bit hash of it: in
// production the keyed SipHash-2-4 of a Hasher, whose secret the window,
// its snapshots and its log share. Bloom windows store and probe keys,
// never the raw ids, so a key can be logged and replayed without the ids.
type Key struct {
	Lo, Hi uint64
}

// maxStackKey bounds the pair encoding hashed without a heap allocation;
// longer pairs still hash correctly, through a heap buffer.
const maxStackKey = 512

// KeyOf returns the unkeyed key of the pair (campaign, user): the 128-bit
// MurmurHash3 (x64_128, seed 0) of the same encoding Hasher.Key hashes,
// which is the hash bits-and-blooms/bloom/v3 uses. Anyone can compute it,
// and murmur3 has seed-independent multicollisions, so crafted ids can
// share keys at will: it is kept as a baseline for tests and benchmarks.
// Windows and stores hash with their Hasher.
func KeyOf(campaign, user []byte) Key { return keyOf(Hasher{}, false, campaign, user) }

// KeyOfString is KeyOf for string ids.
func KeyOfString(campaign, user string) Key { return keyOf(Hasher{}, false, campaign, user) }

// keyOf hashes the pair with h if keyed, else with murmur128. h is passed
// by value: a pointer would escape through the generic instantiation.
func keyOf[T string | []byte](h Hasher, keyed bool, campaign, user T) Key {
	// Typical pairs (a UUID user on a short campaign id) take the small
	// buffer: Go zeroes a stack array on every call, so its size costs.
	if n := 2 + len(campaign) + len(user); n <= 128 {
		var stack [128]byte
		return hashPair(h, keyed, stack[:0], campaign, user)
	} else if n <= maxStackKey {
		var stack [maxStackKey]byte
		return hashPair(h, keyed, stack[:0], campaign, user)
	} else {
		return hashPair(h, keyed, make([]byte, 0, n), campaign, user)
	}
}

// hashPair encodes the pair into buf, which has room for it, and hashes it
// with h if keyed, else with murmur128.
func hashPair[T string | []byte](h Hasher, keyed bool, buf []byte, campaign, user T) Key {
	buf = binary.LittleEndian.AppendUint16(buf, uint16(len(campaign)))
	buf = append(buf, campaign...)
	buf = append(buf, user...)
	var lo, hi uint64
	if keyed {
		lo, hi = siphash.Hash128(h.k0, h.k1, buf)
	} else {
		lo, hi = murmur128(buf)
	}
	return Key{Lo: lo, Hi: hi}
}

const (
	murC1 = 0x87c37b91114253d5
	murC2 = 0x4cf5ad432745937f
)

// murmur128 is MurmurHash3_x64_128 with seed 0.
func murmur128(data []byte) (h1, h2 uint64) {
	whole, n := data, len(data)
	for len(data) >= 16 {
		k1 := binary.LittleEndian.Uint64(data)
		k2 := binary.LittleEndian.Uint64(data[8:])
		data = data[16:]

		k1 *= murC1
		k1 = bits.RotateLeft64(k1, 31)
		k1 *= murC2
		h1 ^= k1
		h1 = bits.RotateLeft64(h1, 27)
		h1 += h2
		h1 = h1*5 + 0x52dce729

		k2 *= murC2
		k2 = bits.RotateLeft64(k2, 33)
		k2 *= murC1
		h2 ^= k2
		h2 = bits.RotateLeft64(h2, 31)
		h2 += h1
		h2 = h2*5 + 0x38495ab5
	}
	var k1, k2 uint64
	switch t := len(data); {
	case n < 8:
		for i := t - 1; i >= 8; i-- {
			k2 = k2<<8 | uint64(data[i])
		}
		for i := min(t, 8) - 1; i >= 0; i-- {
			k1 = k1<<8 | uint64(data[i])
		}
	case t > 8:
		k1 = binary.LittleEndian.Uint64(data)
		k2 = lastBytes(whole, t-8)
	case t > 0:
		k1 = lastBytes(whole, t)
	}
	if len(data) > 8 {
		k2 *= murC2
		k2 = bits.RotateLeft64(k2, 33)
		k2 *= murC1
		h2 ^= k2
	}
	if len(data) > 0 {
		k1 *= murC1
		k1 = bits.RotateLeft64(k1, 31)
		k1 *= murC2
		h1 ^= k1
	}
	h1 ^= uint64(n)
	h2 ^= uint64(n)
	h1 += h2
	h2 += h1
	h1 = fmix64(h1)
	h2 = fmix64(h2)
	h1 += h2
	h2 += h1
	return h1, h2
}

// lastBytes returns the last n (1 to 8) bytes of b, which holds at least
// 8, as a little-endian integer: one load instead of n.
func lastBytes(b []byte, n int) uint64 {
	return binary.LittleEndian.Uint64(b[len(b)-8:]) >> (64 - 8*n)
}

func fmix64(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}
