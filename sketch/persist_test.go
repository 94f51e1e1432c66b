package sketch

import (
	"bytes"
	"errors"
	"hash/maphash"
	"io"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

// persistOpts has 16 Bloom shards, so shards at different epochs and shards
// never touched both occur. Its secret is fixed: a state holds keys, not
// their secret, and is read back by a window keyed alike
// (TestStateNeedsItsSecret).
var persistOpts = Options{TTL: time.Hour, Slices: 6, Capacity: 200_000, FalsePositiveRate: 0.01, Secret: [16]byte{'p', 'e', 'r', 's', 'i', 's', 't'}}

func state(t testing.TB, d Deduper) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := d.WriteTo(&buf)
	if err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo returned %d, wrote %d bytes", n, buf.Len())
	}
	return buf.Bytes()
}

func restore(t testing.TB, mode string, o Options, st []byte) Deduper {
	t.Helper()
	d := newDeduper(t, mode, o)
	n, err := d.ReadFrom(bytes.NewReader(st))
	if err != nil {
		t.Fatalf("ReadFrom: %v", err)
	}
	if n != int64(len(st)) {
		t.Fatalf("ReadFrom returned %d, want %d", n, len(st))
	}
	return d
}

// sameAnswers checks that a and b answer Test alike for users [0, n) at
// each time; Test rotates both as it goes.
func sameAnswers(t *testing.T, a, b Deduper, n int, times ...time.Time) {
	t.Helper()
	for _, now := range times {
		seen := 0
		for i := range n {
			got, want := b.Test(camp, user(i), now), a.Test(camp, user(i), now)
			if got != want {
				t.Fatalf("user %d at %s: restored says %v, original %v", i, now.Sub(t0), got, want)
			}
			if got {
				seen++
			}
		}
		t.Logf("at t0+%s: %d of %d seen by both", now.Sub(t0), seen, n)
	}
}

func TestPersistRoundTrip(t *testing.T) {
	const added, probed = 6000, 8000 // users beyond added are fresh pairs
	for _, mode := range []string{"bloom", "exact"} {
		t.Run(mode, func(t *testing.T) {
			d := newDeduper(t, mode, persistOpts)
			for i := range added { // t0 to t0+40m: four slices
				d.TestAndAdd(camp, user(i), t0.Add(time.Duration(i)*40*time.Minute/added))
			}
			// A few pairs in a sixth slice leave most shards behind it.
			for i := added; i < added+5; i++ {
				d.TestAndAdd(camp, user(i), t0.Add(55*time.Minute))
			}
			r := restore(t, mode, persistOpts, state(t, d))
			if !sameBytes(mode, r.Bytes(), d.Bytes()) {
				t.Fatalf("Bytes: restored %d, original %d", r.Bytes(), d.Bytes())
			}
			if x, ok := d.(*Exact); ok {
				if got, want := r.(*Exact).Len(), x.Len(); got != want {
					t.Fatalf("Len: restored %d, original %d", got, want)
				}
			}
			sameAnswers(t, d, r, probed,
				t0.Add(55*time.Minute), t0.Add(65*time.Minute), t0.Add(80*time.Minute),
				t0.Add(95*time.Minute), t0.Add(110*time.Minute), t0.Add(3*time.Hour))
		})
	}
}

// TestBloomRoundTripPool checks that every shard's pool comes back as it
// was: the open sub-filter's account, the live closed ones oldest first,
// and shards never touched stay empty; the restored window then frees the
// same sub-filters at the same times.
func TestBloomRoundTripPool(t *testing.T) {
	b, err := NewBloom(persistOpts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 * b.pool.Load { // every shard closes sub-filters by load, then by time
		b.TestAndAdd(camp, user(i), t0.Add(time.Duration(i)*100*time.Millisecond))
	}
	b.TestAndAdd(camp, user(-1), t0.Add(20*time.Minute))
	r := restore(t, "bloom", persistOpts, state(t, b)).(*Bloom)
	for i := range b.shards {
		if got, want := accounts(&r.shards[i]), accounts(&b.shards[i]); !reflect.DeepEqual(got, want) {
			t.Fatalf("shard %d: restored %+v, original %+v", i, got, want)
		}
	}
	before := b.Rotations()
	b.Advance(t0.Add(80 * time.Minute))
	r.Advance(t0.Add(80 * time.Minute))
	if got, want := r.Rotations(), b.Rotations()-before; got != want || got == 0 {
		t.Fatalf("sub-filters freed after Advance: restored %d, original %d", got, want)
	}
}

// accounts lists a shard's open sub-filter and its live closed ones,
// oldest first.
func accounts(s *bloomShard) []sub {
	out := []sub{s.curSub}
	s.eachLive(func(j int) { out = append(out, s.subs[j]) })
	return out
}

// TestExactReadFromAgesLaggingShards puts two pairs in different shards and
// moves one shard a TTL on: the other's generation has left the window, and
// ReadFrom drops it as the writer's next touch would.
func TestExactReadFromAgesLaggingShards(t *testing.T) {
	x, err := NewExact(persistOpts)
	if err != nil {
		t.Fatal(err)
	}
	shard := func(i int) uint64 { return maphash.Bytes(x.seed, pairKey(nil, camp, user(i))) % exactShards }
	other := 2
	for shard(other) == shard(1) {
		other++
	}
	x.TestAndAdd(camp, user(1), t0)
	x.TestAndAdd(camp, user(other), t0.Add(75*time.Minute)) // slice 7: slice 0 has left
	if x.Len() != 2 {
		t.Fatalf("Len before the lagging shard is touched: got %d, want 2", x.Len())
	}
	r := restore(t, "exact", persistOpts, state(t, x)).(*Exact)
	if got := r.Len(); got != 1 {
		t.Fatalf("Len after ReadFrom: got %d, want 1", got)
	}
	x.Advance(t0.Add(75 * time.Minute))
	if got, want := r.Bytes(), x.Bytes(); got != want {
		t.Fatalf("Bytes: restored %d, original after Advance %d", got, want)
	}
	sameAnswers(t, x, r, other+1, t0.Add(75*time.Minute), t0.Add(2*time.Hour))
}

func TestPersistEmptyWindow(t *testing.T) {
	for _, mode := range []string{"bloom", "exact"} {
		d := newDeduper(t, mode, persistOpts)
		r := restore(t, mode, persistOpts, state(t, d))
		if r.TestAndAdd(camp, user(1), t0) || !r.Test(camp, user(1), t0) {
			t.Fatalf("%s: a window restored empty does not count", mode)
		}
		if r.Rotations() != 0 {
			t.Fatalf("%s: first touch after restoring an empty window counted %d rotations", mode, r.Rotations())
		}
	}
}

// TestReadFromThenTestAndAdd continues after a restore: old pairs stay
// blocked for their TTL, new ones count, rotation goes on.
func TestReadFromThenTestAndAdd(t *testing.T) {
	for _, mode := range []string{"bloom", "exact"} {
		t.Run(mode, func(t *testing.T) {
			d := newDeduper(t, mode, persistOpts)
			for i := range 100 {
				d.TestAndAdd(camp, user(i), t0)
			}
			r := restore(t, mode, persistOpts, state(t, d))
			now := t0.Add(30 * time.Minute)
			for i := range 200 {
				if got, want := r.TestAndAdd(camp, user(i), now), i < 100; got != want {
					t.Fatalf("user %d after ReadFrom: seen %v, want %v", i, got, want)
				}
			}
			later := t0.Add(time.Hour + 11*time.Minute) // the first 100 have left
			for i := range 200 {
				if got, want := r.TestAndAdd(camp, user(i), later), i >= 100; got != want {
					t.Fatalf("user %d after ttl: seen %v, want %v", i, got, want)
				}
			}
			if r.Rotations() == 0 {
				t.Fatal("no rotation after ReadFrom")
			}
		})
	}
}

func TestReadFromLayoutMismatch(t *testing.T) {
	o := persistOpts
	with := func(f func(*Options)) Options { o := o; f(&o); return o }
	for _, tc := range []struct {
		name         string
		from, into   string
		fromO, intoO Options
		want         string // in the error text
	}{
		// Same shard count, more bits per filter.
		{"bloom capacity", "bloom", "bloom", o, with(func(o *Options) { o.Capacity = 210_000 }), "m "},
		{"bloom slices", "bloom", "bloom", o, with(func(o *Options) { o.Slices = 4 }), "slice "},
		{"bloom ttl", "bloom", "bloom", o, with(func(o *Options) { o.TTL = 2 * time.Hour }), "slice 10m0s vs 20m0s"},
		{"bloom fp rate", "bloom", "bloom", o, with(func(o *Options) { o.FalsePositiveRate = 0.001 }), "m "},
		// Slices and TTL with the same slice length.
		{"exact slices", "exact", "exact", o, with(func(o *Options) { o.Slices = 12; o.TTL = 2 * time.Hour }), "generations 7 vs 13"},
		{"exact ttl", "exact", "exact", o, with(func(o *Options) { o.TTL = 30 * time.Minute }), "slice "},
		{"bloom into exact", "bloom", "exact", o, o, "mode bloom vs exact"},
		{"exact into bloom", "exact", "bloom", o, o, "mode exact vs bloom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDeduper(t, tc.from, tc.fromO)
			d.TestAndAdd(camp, user(1), t0)
			r := newDeduper(t, tc.into, tc.intoO)
			_, err := r.ReadFrom(bytes.NewReader(state(t, d)))
			if !errors.Is(err, ErrLayoutMismatch) {
				t.Fatalf("got %v, want an error wrapping ErrLayoutMismatch", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

// TestReadFromEarlierBloomLayout: states of the earlier Bloom layouts
// (kind 'B', unblocked; 'C', one blocked filter per fixed slice) are
// refused as layout mismatches that name the earlier version, never read
// as a pool.
func TestReadFromEarlierBloomLayout(t *testing.T) {
	d := newDeduper(t, "bloom", persistOpts)
	d.TestAndAdd(camp, user(1), t0)
	for _, kind := range []byte{kindBloomV1, kindBloomV2} {
		st := state(t, d)
		st[0] = kind
		_, err := newDeduper(t, "bloom", persistOpts).ReadFrom(bytes.NewReader(st))
		if !errors.Is(err, ErrLayoutMismatch) || !strings.Contains(err.Error(), "earlier version") {
			t.Fatalf("kind %q: got %v, want a layout mismatch naming the earlier version", kind, err)
		}
	}
}

// smallStates returns a state of each mode written with smallOpts, with
// pairs in several slices.
func smallStates(t testing.TB) map[string][]byte {
	states := map[string][]byte{}
	for _, mode := range []string{"bloom", "exact"} {
		d := newDeduper(t, mode, smallOpts)
		for i := range 20 {
			d.TestAndAdd(camp, user(i), t0.Add(time.Duration(i)*3*time.Minute))
		}
		states[mode] = state(t, d)
	}
	return states
}

// smallOpts make states of a few kilobytes: one Bloom shard, three
// generations.
var smallOpts = Options{TTL: time.Hour, Slices: 2, Capacity: 100, FalsePositiveRate: 0.01}

func TestReadFromTruncated(t *testing.T) {
	for mode, st := range smallStates(t) {
		t.Run(mode, func(t *testing.T) {
			r := newDeduper(t, mode, smallOpts)
			for n := range len(st) {
				if _, err := r.ReadFrom(bytes.NewReader(st[:n])); !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("ReadFrom of %d of %d bytes: got %v, want io.ErrUnexpectedEOF", n, len(st), err)
				}
				if r.Test(camp, user(19), t0.Add(time.Hour)) {
					t.Fatalf("ReadFrom of %d bytes failed but left pairs in the window", n)
				}
			}
			_, err := r.ReadFrom(bytes.NewReader(append(bytes.Clone(st), 0)))
			if err == nil || !strings.Contains(err.Error(), "after the state") {
				t.Fatalf("ReadFrom with a trailing byte: got %v, want an error", err)
			}
		})
	}
}

// TestReadFromInconsistent corrupts one field of a valid state at a time.
func TestReadFromInconsistent(t *testing.T) {
	states := smallStates(t)
	bloomHeader, exactHeader := (layout{kind: kindBloom}).size(), (layout{kind: kindExact}).size()
	put := func(b []byte, off int, v ...byte) []byte { b = bytes.Clone(b); copy(b[off:], v); return b }
	for _, tc := range []struct {
		name, mode string
		st         []byte
		want       string
	}{
		{"unknown kind", "bloom", put(states["bloom"], 0, 'Z'), "not a dedup window state"},
		{"bloom more closed sub-filters than slots", "bloom", put(states["bloom"], bloomHeader+subLen, 0xff, 0xff), "closed sub-filters in"},
		{"bloom negative pair count", "bloom", put(states["bloom"], bloomHeader+16, 0xff, 0xff, 0xff, 0xff), "open one of -1 pairs"},
		{"exact head out of range", "exact", put(states["exact"], exactHeader+8, 0xff, 0xff, 0xff, 0xff), "ring head"},
		// A shard holding pairs, its epoch set to noEpoch.
		{"exact pairs in untouched shard", "exact", untouchWithPairs(t, states["exact"]), "never touched"},
		{"exact malformed key", "exact", malformKey(t, states["exact"]), "malformed pair key"},
		{"exact duplicate pair", "exact", duplicatePair(t), "twice"},
		{"exact huge count", "exact", hugeCount(t, states["exact"]), "of 4294967295"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newDeduper(t, tc.mode, smallOpts)
			_, err := r.ReadFrom(bytes.NewReader(tc.st))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// firstPairs returns the offset of the first shard of an exact state that
// holds pairs, and of its first generation count that is not zero.
func firstPairs(t testing.TB, st []byte) (shard, count int) {
	off := (layout{kind: kindExact}).size()
	for range exactShards {
		shard = off
		off += ringLen
		for range smallOpts.Slices + 1 {
			n := int(le.Uint32(st[off:]))
			if n > 0 {
				return shard, off
			}
			off += 4
		}
	}
	t.Fatal("no pairs in the state")
	return 0, 0
}

func untouchWithPairs(t testing.TB, st []byte) []byte {
	shard, _ := firstPairs(t, st)
	st = bytes.Clone(st)
	copy(st[shard:], appendRing(nil, newRing(1))[:8])
	return st
}

func malformKey(t testing.TB, st []byte) []byte {
	_, count := firstPairs(t, st)
	st = bytes.Clone(st)
	le.PutUint16(st[count+6:], 0xffff) // the campaign length inside the key
	return st
}

func hugeCount(t testing.TB, st []byte) []byte {
	_, count := firstPairs(t, st)
	st = bytes.Clone(st)
	le.PutUint32(st[count:], 1<<32-1)
	return st
}

// duplicatePair writes the same pair into two shards of a state.
func duplicatePair(t testing.TB) []byte {
	x, err := NewExact(smallOpts)
	if err != nil {
		t.Fatal(err)
	}
	b := x.layout().append(nil)
	k := pairKey(nil, camp, user(1))
	for s := range exactShards {
		b = appendRing(b, ring{epoch: x.clock.epoch(t0)})
		for g := range x.Generations() {
			if g == 0 && s < 2 {
				b = le.AppendUint32(b, 1)
				b = le.AppendUint16(b, uint16(len(k)))
				b = append(b, k...)
				continue
			}
			b = le.AppendUint32(b, 0)
		}
	}
	return b
}

// TestReadFromGarbage feeds random bytes and randomly corrupted states:
// ReadFrom must return, never panic; random bytes must fail; and the window
// must work afterwards.
func TestReadFromGarbage(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	states := smallStates(t)
	for mode, st := range states {
		r := newDeduper(t, mode, smallOpts)
		for i := range 2000 {
			junk := make([]byte, rng.IntN(2*len(st)))
			for j := range junk {
				junk[j] = byte(rng.Uint32())
			}
			if i%2 == 0 && len(junk) > 0 {
				junk[0] = st[0] // get past the kind byte
			}
			if _, err := r.ReadFrom(bytes.NewReader(junk)); err == nil {
				t.Fatalf("%s: ReadFrom of %d random bytes: no error", mode, len(junk))
			}
			bad := bytes.Clone(st)
			for range 1 + rng.IntN(4) {
				bad[rng.IntN(len(bad))] ^= byte(1 + rng.IntN(255))
			}
			// Either result is right: a flipped bit may be a valid state. What
			// is tested is that r stays usable.
			_, _ = r.ReadFrom(bytes.NewReader(bad))
			r.TestAndAdd(camp, user(i), t0.Add(time.Duration(i)*time.Minute))
		}
	}
}

// TestReadFromBoundedAllocation reads a state claiming 2^32-1 pairs in one
// generation but holding none: ReadFrom must fail without allocating for
// the claim.
func TestReadFromBoundedAllocation(t *testing.T) {
	st := hugeCount(t, smallStates(t)["exact"])
	r := newDeduper(t, "exact", smallOpts)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := r.ReadFrom(bytes.NewReader(st)); err == nil {
		t.Fatal("no error")
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
		t.Fatalf("ReadFrom allocated %d bytes for a %d-byte state", got, len(st))
	}
}

// FuzzReadFrom checks ReadFrom on arbitrary input: no panic, and a state it
// accepts writes out and reads back again.
func FuzzReadFrom(f *testing.F) {
	for _, st := range smallStates(f) {
		f.Add(st)
		f.Add(st[:len(st)/2])
	}
	f.Add([]byte{})
	f.Add([]byte("B\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, mode := range []string{"bloom", "exact"} {
			r := newDeduper(t, mode, smallOpts)
			if _, err := r.ReadFrom(bytes.NewReader(data)); err != nil {
				continue
			}
			again := newDeduper(t, mode, smallOpts)
			if _, err := again.ReadFrom(bytes.NewReader(state(t, r))); err != nil {
				t.Fatalf("%s: a state ReadFrom accepted does not read back: %v", mode, err)
			}
			if mode == "bloom" && !bytes.Equal(state(t, again), data) {
				t.Fatal("bloom: state changed through ReadFrom and WriteTo")
			}
		}
	})
}

// TestWriteToDuringTestAndAdd writes states while pairs are counted: each
// state must read back, and the adds must not wait for a whole write.
func TestWriteToDuringTestAndAdd(t *testing.T) {
	for _, mode := range []string{"bloom", "exact"} {
		t.Run(mode, func(t *testing.T) {
			d := newDeduper(t, mode, persistOpts)
			stop, done := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(done)
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					d.TestAndAdd(camp, user(i), t0.Add(time.Duration(i)*time.Second))
				}
			}()
			for range 20 {
				restore(t, mode, persistOpts, state(t, d))
			}
			close(stop)
			<-done
		})
	}
}
