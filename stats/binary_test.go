package stats

import (
	"encoding/binary"
	"strings"
	"testing"
)

// spreadCounter counts minutes over more than a day, so that some ring
// slots were reclaimed by a later minute and some still hold a minute older
// than the ring, plus impressions too old for any bucket.
func spreadCounter() (*Counter, int64) {
	var c Counter
	now := base + 2*Minutes
	add := func(from, to, step int64) {
		for m := from; m <= to; m += step {
			for range 1 + m%4 {
				c.Add(m, m) // each minute counted while current
			}
		}
	}
	add(base, base+Minutes-1, 5)
	add(base+Minutes, now, 7) // reclaims every 5th slot of the first day
	if c.At(base) != 0 || c.At(base+5) == 0 {
		panic("BUG: spreadCounter does not both reclaim and keep first-day slots")
	}
	c.Add(base-5*Minutes, now) // total only
	c.Add(base-5*Minutes, now)
	return &c, now
}

func TestCounterBinaryRoundTrip(t *testing.T) {
	c, now := spreadCounter()
	b, err := c.AppendBinary([]byte("prefix"))
	if err != nil {
		t.Fatal(err)
	}
	if string(b[:6]) != "prefix" {
		t.Fatalf("AppendBinary overwrote the slice it appends to: %q", b[:6])
	}
	var got Counter
	got.Add(now, now) // replaced, not merged
	if err := got.UnmarshalBinary(b[6:]); err != nil {
		t.Fatal(err)
	}
	if got.Total() != c.Total() {
		t.Fatalf("Total: got %d, want %d", got.Total(), c.Total())
	}
	for _, at := range []int64{now, now - 90, now + 30, now + Minutes} {
		if g, w := got.Read(at), c.Read(at); g != w {
			t.Fatalf("Read(now%+d): got %+v, want %+v", at-now, g, w)
		}
	}
	for m := base - Minutes; m <= now+Minutes; m++ {
		if g, w := got.At(m), c.At(m); g != w {
			t.Fatalf("At(now%+d): got %d, want %d", m-now, g, w)
		}
	}
	var empty, back Counter
	b, _ = empty.AppendBinary(nil)
	if len(b) != binaryHeaderLen {
		t.Fatalf("an empty counter encodes to %d bytes, want %d", len(b), binaryHeaderLen)
	}
	if err := back.UnmarshalBinary(b); err != nil || back.Total() != 0 {
		t.Fatalf("empty counter: got total %d, error %v", back.Total(), err)
	}
}

func TestCounterBinaryTruncated(t *testing.T) {
	c, _ := spreadCounter()
	b, _ := c.AppendBinary(nil)
	for n := range len(b) {
		var got Counter
		if err := got.UnmarshalBinary(b[:n]); err == nil {
			t.Fatalf("UnmarshalBinary of %d of %d bytes: no error", n, len(b))
		}
	}
	var got Counter
	if err := got.UnmarshalBinary(append(b, 0)); err == nil {
		t.Fatal("UnmarshalBinary with a trailing byte: no error")
	}
}

func TestCounterBinaryInvalid(t *testing.T) {
	word := func(m int64, count uint64) uint64 { return uint64(m+minuteBias)<<32 | count }
	for _, tc := range []struct {
		name  string
		total uint64
		words []uint64
		want  string // in the error text
	}{
		// base and base+Minutes share ring slot base%Minutes.
		{"duplicate slot", 10, []uint64{word(base, 1), word(base+Minutes, 2)}, "share ring slot"},
		{"same minute twice", 10, []uint64{word(base, 1), word(base, 1)}, "share ring slot"},
		{"zero tag", 10, []uint64{5}, "no minute"},
		{"zero count", 10, []uint64{word(base, 0)}, "zero count"},
		{"buckets above total", 2, []uint64{word(base, 2), word(base+1, 1)}, "more than the total"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := binary.LittleEndian.AppendUint64(nil, tc.total)
			b = binary.LittleEndian.AppendUint32(b, uint32(len(tc.words)))
			for _, w := range tc.words {
				b = binary.LittleEndian.AppendUint64(b, w)
			}
			var c Counter
			c.Add(base, base)
			err := c.UnmarshalBinary(b)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
			if c.Total() != 1 || c.At(base) != 1 {
				t.Fatalf("a failed UnmarshalBinary changed the counter: total %d, At %d", c.Total(), c.At(base))
			}
		})
	}
	// A bucket count that overflows the header's length arithmetic.
	b := binary.LittleEndian.AppendUint64(nil, 0)
	b = binary.LittleEndian.AppendUint32(b, 1<<32-1)
	var c Counter
	if err := c.UnmarshalBinary(b); err == nil {
		t.Fatal("4 billion buckets in 12 bytes: no error")
	}
}

// TestCounterAppendBinaryConcurrent encodes while adds run: every reading
// must decode, with its windows within its total.
func TestCounterAppendBinaryConcurrent(t *testing.T) {
	var c Counter
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := int64(0); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c.Add(base+i%3000, base+i%3000)
		}
	}()
	var b []byte
	for range 200 {
		b, _ = c.AppendBinary(b[:0])
		var got Counter
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("a concurrent reading does not decode: %v", err)
		}
	}
	close(stop)
	<-done
}
