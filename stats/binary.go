package stats

import (
	"encoding"
	"encoding/binary"
	"fmt"
	"slices"
)

// A Counter's binary form, all integers little-endian: total (uint64), the
// number of non-empty buckets (uint32), then each non-empty bucket's packed
// word (uint64: minute tag << 32 | count), in ring order.

var (
	_ encoding.BinaryAppender    = (*Counter)(nil)
	_ encoding.BinaryUnmarshaler = (*Counter)(nil)
)

const binaryHeaderLen = 8 + 4

// AppendBinary implements encoding.BinaryAppender: it appends the total and
// every non-empty bucket to b. It is safe to call concurrently with Add, but
// a concurrent reading is not a single instant: each bucket and the total
// are loaded one by one. The buckets are loaded before the total, so the
// reading keeps LastDay ≤ Total like Read. It never fails.
func (c *Counter) AppendBinary(b []byte) ([]byte, error) {
	b = slices.Grow(b, binaryHeaderLen+8*Minutes)
	head := len(b)
	b = b[:head+binaryHeaderLen]
	n := uint32(0)
	for i := range c.buckets {
		if v := c.buckets[i].Load(); v != 0 {
			b = binary.LittleEndian.AppendUint64(b, v)
			n++
		}
	}
	binary.LittleEndian.PutUint64(b[head:], c.total.Load())
	binary.LittleEndian.PutUint32(b[head+8:], n)
	return b, nil
}

// UnmarshalBinary implements encoding.BinaryUnmarshaler: it replaces the
// counter's state with one AppendBinary wrote, or returns an error and
// leaves the counter unchanged if data is not one: a wrong length, a
// bucket without a minute or a count, two buckets for one ring slot, or
// buckets counting more than the total. It is not safe to call
// concurrently with other methods; it is meant for start-up.
func (c *Counter) UnmarshalBinary(data []byte) error {
	if len(data) < binaryHeaderLen {
		return fmt.Errorf("stats: counter state of %d bytes, want at least %d", len(data), binaryHeaderLen)
	}
	total := binary.LittleEndian.Uint64(data)
	n := binary.LittleEndian.Uint32(data[8:])
	if want := binaryHeaderLen + 8*uint64(n); uint64(len(data)) != want {
		return fmt.Errorf("stats: counter state of %d bytes for %d buckets, want %d", len(data), n, want)
	}
	var buckets [Minutes]uint64
	var sum uint64
	for w := data[binaryHeaderLen:]; len(w) > 0; w = w[8:] {
		v := binary.LittleEndian.Uint64(w)
		if err := checkBucket(v, &buckets); err != nil {
			return err
		}
		sum += v & countMask
	}
	if sum > total {
		return fmt.Errorf("stats: counter buckets hold %d impressions, more than the total %d", sum, total)
	}
	c.total.Store(total)
	for i, v := range buckets {
		c.buckets[i].Store(v)
	}
	return nil
}

// checkBucket validates a packed bucket word and files it in its ring slot.
func checkBucket(v uint64, buckets *[Minutes]uint64) error {
	tag := v >> 32
	if tag == 0 {
		return fmt.Errorf("stats: counter bucket %#016x has no minute", v)
	}
	if v&countMask == 0 {
		return fmt.Errorf("stats: counter bucket %#016x has a zero count", v)
	}
	slot := (tag - minuteBias) % Minutes
	if prev := buckets[slot]; prev != 0 {
		return fmt.Errorf("stats: counter buckets %#016x and %#016x share ring slot %d", prev, v, slot)
	}
	buckets[slot] = v
	return nil
}
