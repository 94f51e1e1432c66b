package sketch

import (
	"bytes"
	"hash/maphash"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestBloomRoundTripFullPool: a shard whose every slot holds a live
// sub-filter, the most a state can hold, reads back as it was.
func TestBloomRoundTripFullPool(t *testing.T) {
	b := newOneShardBloom(t)
	p := b.Pool()
	at := time.Unix(1_000_000, 0)
	for i, added := 0, 0; added < p.Slots*p.Load; i++ {
		if !b.TestAndAdd(camp, user(i), at) {
			added++
		}
	}
	if st := b.Stats(); st.Live != p.Slots {
		t.Fatalf("%d live sub-filters, want every one of the %d slots", st.Live, p.Slots)
	}
	st := state(t, b)
	r := newOneShardBloom(t)
	if n, err := r.ReadFrom(bytes.NewReader(st)); err != nil || n != int64(len(st)) {
		t.Fatalf("ReadFrom of a full pool: %d bytes, %v; want %d, nil", n, err, len(st))
	}
	if got, want := accounts(&r.shards[0]), accounts(&b.shards[0]); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored %+v, original %+v", got, want)
	}
	if !bytes.Equal(state(t, r), st) {
		t.Fatal("the restored window writes another state")
	}
}

// TestExactStateKeyLengths: the shortest pair key (empty campaign and
// user, its 2-byte length alone), one with an empty user, and the longest
// the format holds (65,535 bytes) are written and read back; one byte more
// cannot be written.
func TestExactStateKeyLengths(t *testing.T) {
	longest := bytes.Repeat([]byte("u"), math.MaxUint16-2-len(camp))
	pairs := [][2][]byte{{nil, nil}, {camp, nil}, {camp, longest}, {camp, user(1)}}
	x := newBounded(t, 0)
	for _, p := range pairs {
		if x.TestAndAdd(p[0], p[1], t0) {
			t.Fatalf("pair (%q, %d-byte user) reported seen", p[0], len(p[1]))
		}
	}
	r := restore(t, "exact", Options{TTL: time.Hour, Slices: 6}, state(t, x)).(*Exact)
	if got := r.Len(); got != len(pairs) {
		t.Fatalf("Len after ReadFrom: %d, want %d", got, len(pairs))
	}
	for _, p := range pairs {
		if !r.Test(p[0], p[1], t0) {
			t.Fatalf("pair (%q, %d-byte user) not read back", p[0], len(p[1]))
		}
	}
	x.TestAndAdd(camp, append(longest, 'u'), t0)
	if _, err := x.WriteTo(&bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "pair key of 65536 bytes, more than 65535") {
		t.Fatalf("WriteTo with a 65,536-byte key: got %v, want an error naming its length", err)
	}
}

// exactStateOf returns an exact state for smallOpts (3 generations) whose
// shard 0 is at epoch e with head h and holds the given raw entries (a
// 2-byte length, then the key) in its generation 0; the other shards were
// never touched.
func exactStateOf(t *testing.T, e int64, h uint32, entries ...[]byte) []byte {
	t.Helper()
	x, err := NewExact(smallOpts)
	if err != nil {
		t.Fatal(err)
	}
	b := x.layout().append(nil)
	for s := range exactShards {
		if s == 0 {
			b = le.AppendUint64(b, uint64(e))
			b = le.AppendUint32(b, h)
			b = le.AppendUint32(b, uint32(len(entries)))
			for _, en := range entries {
				b = append(b, en...)
			}
			b = le.AppendUint32(le.AppendUint32(b, 0), 0)
			continue
		}
		b = appendRing(b, newRing(x.Generations()))
		b = le.AppendUint32(le.AppendUint32(le.AppendUint32(b, 0), 0), 0)
	}
	return b
}

// entry returns a state entry of n key bytes whose campaign length field
// says c.
func entry(n, c int) []byte {
	e := le.AppendUint16(nil, uint16(n))
	if n >= 2 {
		e = le.AppendUint16(e, uint16(c))
		e = append(e, bytes.Repeat([]byte("k"), n-2)...)
	} else {
		e = append(e, bytes.Repeat([]byte("k"), n)...)
	}
	return e
}

// TestExactReadFromKeyFraming: a key must hold its 2-byte campaign length
// and at most that many campaign bytes; a campaign filling the key (an
// empty user) is valid, one byte more is not.
func TestExactReadFromKeyFraming(t *testing.T) {
	e := smallEpoch(t)
	for _, tc := range []struct {
		name  string
		entry []byte
		want  string // "" if valid
	}{
		{"empty campaign and user", entry(2, 0), ""},
		{"campaign fills the key", entry(10, 8), ""},
		{"campaign one byte past the key", entry(10, 9), "malformed pair key of 10 bytes"},
		{"campaign two bytes past the key", entry(10, 10), "malformed pair key of 10 bytes"},
		{"key of one byte", entry(1, 0), "malformed pair key of 1 bytes"},
		{"key of no byte", entry(0, 0), "malformed pair key of 0 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, err := NewExact(smallOpts)
			if err != nil {
				t.Fatal(err)
			}
			_, err = x.ReadFrom(bytes.NewReader(exactStateOf(t, e, 0, tc.entry)))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("got %v, want the state read", err)
			case tc.want == "" && x.Len() != 1:
				t.Fatalf("Len %d after ReadFrom, want 1", x.Len())
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// smallEpoch is the slice of t0 for smallOpts.
func smallEpoch(t *testing.T) int64 {
	x, err := NewExact(smallOpts)
	if err != nil {
		t.Fatal(err)
	}
	return x.clock.epoch(t0)
}

// TestExactReadFromRingBounds: a shard's head must be one of its
// generations, and its epoch the slice of a time Go can hold: from the
// slice of the earliest int64 nanosecond to that of the latest.
func TestExactReadFromRingBounds(t *testing.T) {
	slice := int64(smallOpts.TTL) / int64(smallOpts.Slices)
	first, last := clock{slice: slice}.epoch(time.Unix(0, math.MinInt64)), clock{slice: slice}.epoch(time.Unix(0, math.MaxInt64))
	if first != math.MinInt64/slice-1 || last != math.MaxInt64/slice {
		t.Fatalf("slices of the int64 extremes: %d and %d", first, last)
	}
	e := smallEpoch(t)
	for _, tc := range []struct {
		name  string
		epoch int64
		head  uint32
		want  string // "" if valid
	}{
		{"last head", e, 2, ""},
		{"head past the last", e, 3, "ring head 3 out of 3 generations"},
		{"earliest slice", first, 0, ""},
		{"before the earliest slice", first - 1, 0, "is no time's slice"},
		{"latest slice", last, 0, ""},
		{"after the latest slice", last + 1, 0, "is no time's slice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, err := NewExact(smallOpts)
			if err != nil {
				t.Fatal(err)
			}
			_, err = x.ReadFrom(bytes.NewReader(exactStateOf(t, tc.epoch, tc.head, entry(10, 8))))
			if tc.want == "" && err != nil {
				t.Fatalf("got %v, want the state read", err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// TestExactReadFromCountsRepeats: a state holding one pair in two shards
// is refused, and the error counts the repeats.
func TestExactReadFromCountsRepeats(t *testing.T) {
	x, err := NewExact(smallOpts)
	if err != nil {
		t.Fatal(err)
	}
	_, err = x.ReadFrom(bytes.NewReader(duplicatePair(t)))
	if err == nil || err.Error() != "sketch: pairs are in the state twice (1 repeats)" {
		t.Fatalf("got %v, want the state refused with 1 repeat", err)
	}
	if x.Len() != 0 {
		t.Fatalf("Len %d after a refused state, want 0", x.Len())
	}
}

// TestAppendDoubling: appendDoubling appends in place while e fits, and
// when it does not, at least doubles the capacity (at least 256 bytes).
func TestAppendDoubling(t *testing.T) {
	a := make([]byte, 10, 20)
	b := appendDoubling(a, bytes.Repeat([]byte("x"), 10)) // fits exactly
	if cap(b) != 20 || &b[0] != &a[0] || len(b) != 20 {
		t.Fatalf("appending to fill the capacity: len %d cap %d, moved %v; want 20, 20, in place", len(b), cap(b), &b[0] != &a[0])
	}
	c := appendDoubling(b, []byte("y"))
	if len(c) != 21 || cap(c) < 20+256 || string(c[20:]) != "y" {
		t.Fatalf("one byte past the capacity: len %d cap %d; want 21, at least 276", len(c), cap(c))
	}
	big := make([]byte, 4096)
	if d := appendDoubling(big, []byte("z")); cap(d) < 2*4096 {
		t.Fatalf("one byte past a 4096-byte slice: cap %d, want at least 8192", cap(d))
	}
}

// TestExactReadFromDropsAgedGenerations: a lagging shard read after a
// newer one (so the shared ring is already ahead) has its generations aged
// by how far it lags: one that ages past the window is dropped, even when
// it is not the shard's newest, and the younger one is kept.
func TestExactReadFromDropsAgedGenerations(t *testing.T) {
	x, err := NewExact(persistOpts) // 7 generations of 10 minutes
	if err != nil {
		t.Fatal(err)
	}
	shard := func(u []byte) uint64 { return maphash.Bytes(x.seed, pairKey(nil, camp, u)) % exactShards }
	// uNew's shard comes first in the state, uOld's and uMid's (one shard)
	// after it.
	var uNew, uOld, uMid []byte
	for i := 0; uMid == nil; i++ {
		u := user(i)
		switch {
		case uNew == nil:
			if shard(u) < exactShards/2 {
				uNew = u
			}
		case uOld == nil:
			if shard(u) > shard(uNew) {
				uOld = u
			}
		case shard(u) == shard(uOld):
			uMid = u
		}
	}
	slice := 10 * time.Minute
	start := t0.Truncate(slice)
	x.TestAndAdd(camp, uOld, start)
	x.TestAndAdd(camp, uMid, start.Add(slice))   // uOld's generation is now one old
	x.TestAndAdd(camp, uNew, start.Add(7*slice)) // 6 slices ahead of uOld's shard
	r := restore(t, "exact", persistOpts, state(t, x)).(*Exact)
	if got := r.Len(); got != 2 {
		t.Fatalf("Len after ReadFrom: %d, want 2 (uOld's generation aged out)", got)
	}
	now := start.Add(7 * slice)
	for _, c := range []struct {
		name string
		u    []byte
		want bool
	}{{"uOld", uOld, false}, {"uMid", uMid, true}, {"uNew", uNew, true}} {
		if got := r.Test(camp, c.u, now); got != c.want {
			t.Errorf("restored Test(%s): %v, want %v", c.name, got, c.want)
		}
		if got := x.Test(camp, c.u, now); got != c.want {
			t.Errorf("original Test(%s): %v, want %v", c.name, got, c.want)
		}
	}
}
