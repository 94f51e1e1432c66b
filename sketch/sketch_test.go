package sketch

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bits-and-blooms/bloom/v3"
)

// t0 is an arbitrary arrival time; tests move a fake clock from it.
var t0 = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

func newDeduper(t testing.TB, mode string, o Options) Deduper {
	t.Helper()
	d, err := New(mode, o)
	if err != nil {
		t.Fatalf("New(%q, %+v): %v", mode, o, err)
	}
	return d
}

var camp = []byte("campaign")

func user(i int) []byte { return []byte(fmt.Sprintf("user-%d", i)) }

// TestKeyOfIsBloomMurmur3 checks the unkeyed baseline, murmur128, against
// bloom/v3, and that KeyOf is murmur128 of the pair's encoding. Windows key
// pairs with a Hasher instead (TestHasherIsSipHash).
func TestKeyOfIsBloomMurmur3(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 300; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		lo, _ := murmur128(b)
		// bloom/v3's first location is the low half of murmur3-128(data).
		if want := bloom.Locations(b, 1)[0]; lo != want {
			t.Fatalf("murmur128 of %d bytes: got %#x, want %#x", n, lo, want)
		}
		if n >= 2 {
			c := b[2 : 2+min(n-2, int(b[0])%8)]
			b[0], b[1] = byte(len(c)), 0
			if got, want := KeyOf(c, b[2+len(c):]).Lo, bloom.Locations(b, 1)[0]; got != want {
				t.Fatalf("KeyOf of a %d-byte pair: got %#x, want %#x", n, got, want)
			}
		}
	}
}

func TestKeyOf(t *testing.T) {
	if KeyOf([]byte("ab"), []byte("c")) == KeyOf([]byte("a"), []byte("bc")) {
		t.Fatal("(ab, c) and (a, bc) must have different keys")
	}
	if got, want := KeyOf([]byte("c1"), []byte("u1")), KeyOfString("c1", "u1"); got != want {
		t.Fatalf("KeyOf and KeyOfString differ: %v vs %v", got, want)
	}
	long := make([]byte, 2*maxStackKey)
	if KeyOf([]byte("c"), long) == KeyOf([]byte("c"), long[:len(long)-1]) {
		t.Fatal("long keys must hash their whole input")
	}
}

func TestKeyOfDoesNotAllocate(t *testing.T) {
	c, u := []byte("campaign-1"), []byte("user-123456789")
	if n := testing.AllocsPerRun(100, func() { KeyOf(c, u) }); n != 0 {
		t.Fatalf("KeyOf allocates %v times per call, want 0", n)
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"negative slices", Options{Slices: -1}},
		{"too many slices", Options{Slices: maxSlices + 1}},
		{"slice shorter than 1ms", Options{TTL: 5 * time.Millisecond, Slices: 6}},
		{"negative ttl", Options{TTL: -time.Hour}},
		{"negative capacity", Options{Capacity: -5}},
		{"fp rate 1", Options{FalsePositiveRate: 1}},
		{"negative fp rate", Options{FalsePositiveRate: -0.1}},
		{"NaN fp rate", Options{FalsePositiveRate: math.NaN()}},
		{"negative max pairs", Options{MaxPairs: -1}},
	} {
		for _, mode := range []string{"bloom", "exact"} {
			if _, err := New(mode, tc.o); !errors.Is(err, ErrInvalidOptions) {
				t.Errorf("%s/%s: got error %v, want ErrInvalidOptions", tc.name, mode, err)
			}
		}
	}
	if _, err := New("lru", Options{}); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("unknown mode: got %v, want ErrInvalidOptions", err)
	}
}

// TestWindowBounds checks the guarantee with a fake clock for pairs counted
// at the start, middle and end of a slice: a repeat before TTL is a
// duplicate, a repeat after TTL+TTL/K is counted again.
func TestWindowBounds(t *testing.T) {
	const ttl, slices = time.Hour, 6
	slice := ttl / slices
	for _, mode := range []string{"bloom", "exact"} {
		for _, offset := range []time.Duration{0, time.Nanosecond, slice / 2, slice - time.Nanosecond} {
			t.Run(fmt.Sprintf("%s/offset=%s", mode, offset), func(t *testing.T) {
				d := newDeduper(t, mode, Options{TTL: ttl, Slices: slices, Capacity: 10000})
				at := t0.Truncate(slice).Add(offset)
				c, u := camp, user(1)
				if d.TestAndAdd(c, u, at) {
					t.Fatal("first sight reported as seen")
				}
				for _, dt := range []time.Duration{0, time.Second, ttl / 2, ttl - time.Nanosecond} {
					if !d.Test(c, u, at.Add(dt)) {
						t.Fatalf("repeat %s after counting: not seen, want seen", dt)
					}
				}
				if d.Test(c, u, at.Add(ttl+slice+time.Nanosecond)) {
					t.Fatalf("repeat after ttl+ttl/slices: seen, want forgotten")
				}
			})
		}
	}
}

// TestFixedWindow checks that repeats do not extend the window.
func TestFixedWindow(t *testing.T) {
	const ttl, slices = time.Hour, 4
	for _, mode := range []string{"bloom", "exact"} {
		t.Run(mode, func(t *testing.T) {
			d := newDeduper(t, mode, Options{TTL: ttl, Slices: slices, Capacity: 10000})
			c, u := camp, user(7)
			d.TestAndAdd(c, u, t0)
			for dt := time.Minute; dt < ttl; dt += time.Minute {
				if !d.TestAndAdd(c, u, t0.Add(dt)) {
					t.Fatalf("repeat %s after counting was counted", dt)
				}
			}
			if d.TestAndAdd(c, u, t0.Add(ttl+ttl/slices+time.Second)) {
				t.Fatal("repeats extended the window: pair still blocked after ttl+ttl/slices")
			}
		})
	}
}

// TestNoFalseNegatives counts many pairs over a TTL and checks every one of
// them is still blocked just before its TTL ends.
func TestNoFalseNegatives(t *testing.T) {
	const n, ttl, slices = 60000, time.Hour, 6
	for _, mode := range []string{"bloom", "exact"} {
		t.Run(mode, func(t *testing.T) {
			d := newDeduper(t, mode, Options{TTL: ttl, Slices: slices, Capacity: n})
			step := ttl / n
			for i := 0; i < n; i++ {
				d.TestAndAdd(camp, user(i), t0.Add(time.Duration(i)*step))
			}
			// At t0+ttl-1ns every pair is younger than ttl.
			now := t0.Add(ttl - time.Nanosecond)
			for i := 0; i < n; i++ {
				if !d.Test(camp, user(i), now) {
					t.Fatalf("pair %d counted %s ago is not seen", i, now.Sub(t0.Add(time.Duration(i)*step)))
				}
			}
		})
	}
}

// TestBloomMemory checks the memory bound at the defaults: the pool that
// keeps the rate under any arrival pattern holds at most twice the
// fixed-slice layout it replaced (31,195,136 bytes: K+1 filters per shard,
// each for a slice's share of the capacity), and stays fixed under
// traffic. The yardstick is the bound for optimal unblocked filters holding
// the worst case the pool must hold, Capacity + one sub-filter per shard
// at rate p/(G+1) each.
func TestBloomMemory(t *testing.T) {
	const n, p, k = 10_000_000, 0.001, 6
	b, err := NewBloom(Options{Capacity: n, FalsePositiveRate: p, Slices: k})
	if err != nil {
		t.Fatal(err)
	}
	const fixedSlices = 31_195_136
	got := float64(b.Bytes())
	t.Logf("bloom holds %d bytes (%.2f MiB), %.2f bits/pair, %.3f × the fixed-slice layout; %d shards × %d sub-filters of %d pairs, %d bits, k=%d",
		b.Bytes(), got/(1<<20), got*8/n, got/fixedSlices, b.Shards(), b.Pool().Slots, b.Pool().Load, b.FilterBits(), b.HashCount())
	if got > 2*fixedSlices {
		t.Fatalf("bloom holds %.0f bytes, more than 2 × %d", got, fixedSlices)
	}
	before := b.Bytes()
	for i := 0; i < 100000; i++ {
		b.TestAndAddKey(Key{Lo: uint64(i) * 0x9e3779b97f4a7c15, Hi: uint64(i)}, t0.Add(time.Duration(i)*time.Second))
	}
	if b.Bytes() != before {
		t.Fatalf("bloom memory changed with traffic: %d -> %d", before, b.Bytes())
	}
}

func TestExactReleasesExpiredPairs(t *testing.T) {
	x, err := NewExact(Options{TTL: time.Hour, Slices: 6})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		x.TestAndAdd(camp, user(i), t0)
	}
	if got := x.Len(); got != 1000 {
		t.Fatalf("Len after 1000 pairs: got %d, want 1000", got)
	}
	x.Advance(t0.Add(time.Hour))
	if got := x.Len(); got != 1000 {
		t.Fatalf("Len one TTL later: got %d, want 1000 (still in window)", got)
	}
	x.Advance(t0.Add(time.Hour + 10*time.Minute + time.Second))
	if got := x.Len(); got != 0 {
		t.Fatalf("Len after ttl+ttl/slices: got %d, want 0", got)
	}
}

// TestConcurrentCountsOnce races many goroutines on the same keys: each key
// must be reported new exactly once.
func TestConcurrentCountsOnce(t *testing.T) {
	const goroutines, keys = 64, 500
	for _, mode := range []string{"bloom", "exact"} {
		t.Run(mode, func(t *testing.T) {
			d := newDeduper(t, mode, Options{Capacity: 100000, TTL: time.Hour})
			var fresh [keys]atomic.Int32
			var wg sync.WaitGroup
			for g := 0; g < goroutines; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < keys; i++ {
						// Cross the slice boundary midway so rotation races too.
						now := t0.Add(time.Duration(i) * time.Second * 2)
						if !d.TestAndAdd(camp, user(i), now) {
							fresh[i].Add(1)
						}
					}
				}()
			}
			wg.Wait()
			for i := range fresh {
				if got := fresh[i].Load(); got != 1 {
					t.Fatalf("key %d counted %d times, want 1", i, got)
				}
			}
		})
	}
}

func TestTestDoesNotAdd(t *testing.T) {
	for _, mode := range []string{"bloom", "exact"} {
		d := newDeduper(t, mode, Options{Capacity: 1000})
		if d.Test(camp, user(1), t0) {
			t.Fatalf("%s: unseen key reported seen", mode)
		}
		if d.TestAndAdd(camp, user(1), t0) {
			t.Fatalf("%s: Test recorded the key", mode)
		}
	}
}

func TestPoolStats(t *testing.T) {
	b, err := NewBloom(Options{Capacity: 60000, Slices: 6, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.Live != 0 || st.OpenLoad != 0 || st.FalsePositive != 0 || st.Slots != b.Shards()*b.Pool().Slots {
		t.Fatalf("stats of an empty window: %+v", st)
	}
	// 90% of Capacity/G pairs: each shard's open sub-filter nearly full
	// (its design load has the shards' 2σ margin, and 10% is 7σ more),
	// nothing closed yet.
	pairs := 60000 / subFilters(6) * 9 / 10
	for i := range pairs {
		b.TestAndAdd(camp, user(i), t0)
	}
	st := b.Stats()
	if st.Live != b.Shards() || st.OpenLoad < 0.8 || st.OpenLoad > 1 || st.MaxOpenLoad > 1 {
		t.Fatalf("stats at one sub-filter's load: %+v", st)
	}
	// The estimate at that load is one full sub-filter's rate, give or take
	// the shards' spread: within the layer's budget, well above zero.
	if f := b.SubFilterFalsePositiveRate(); st.FalsePositive > f || st.FalsePositive < f/4 {
		t.Fatalf("false-positive estimate %g, want within [%g, %g]", st.FalsePositive, f/4, f)
	}
	first := b.Rotations()
	b.Advance(t0.Add(time.Hour))
	if got := b.Rotations(); got != first+uint64(b.Shards()) {
		t.Fatalf("sub-filters freed a TTL after their last pair: %d, want %d + %d", got, first, b.Shards())
	}
	if st := b.Stats(); st.Live != 0 || st.FalsePositive != 0 {
		t.Fatalf("stats after the TTL: %+v", st)
	}
	x, _ := NewExact(Options{})
	x.TestAndAdd(camp, user(1), t0)
	r := x.Rotations()
	x.Advance(t0.Add(10 * time.Minute))
	if x.Rotations() != r+1 || x.Generations() != 7 { // untouched shards only initialise
		t.Fatalf("exact rotations %d (was %d), generations %d", x.Rotations(), r, x.Generations())
	}
}

// TestAddReplaysIntoItsSlice: Add puts a pair in the generation of its own
// slice, even once the window has moved on, so a replayed pair expires when
// it would have live; adding it again changes nothing; a pair whose slice
// has left the window is ignored.
func TestAddReplaysIntoItsSlice(t *testing.T) {
	const ttl, slices = time.Hour, 6
	slice := ttl / slices
	for _, mode := range []string{"bloom", "exact"} {
		t.Run(mode, func(t *testing.T) {
			d := newDeduper(t, mode, Options{TTL: ttl, Slices: slices, Capacity: 10000})
			at := t0.Truncate(slice)
			d.TestAndAdd(camp, user(0), at.Add(3*slice)) // the window is three slices on
			d.Add(camp, user(1), at)
			d.Add(camp, user(1), at) // idempotent
			d.Add(camp, user(2), at.Add(-4*slice))
			if !d.Test(camp, user(1), at.Add(ttl-time.Nanosecond)) {
				t.Fatal("replayed pair forgotten within its TTL")
			}
			// Bloom keeps a pair replayed behind its open sub-filter until
			// that sub-filter expires (Bloom.AddKey); in arrival order
			// (TestBloomAddFollowsArrival) it expires with its own.
			if _, ok := d.(*Exact); ok && d.Test(camp, user(1), at.Add(ttl+slice)) {
				t.Fatal("replayed pair outlived the window of its own slice")
			}
			if d.Test(camp, user(2), at.Add(3*slice)) {
				t.Fatal("a pair whose slice had left the window was added")
			}
			if x, ok := d.(*Exact); ok && x.Len() != 1 {
				t.Fatalf("Len = %d, want 1: user 0 (user 1 has expired, user 2 never went in)", x.Len())
			}
		})
	}
}

// TestBloomAddFollowsArrival: pairs replayed with Add in arrival order
// leave the pool as TestAndAdd built it (the same sub-filters, with the
// same accounts), and a pair replayed into the span of a closed sub-filter
// goes into that one.
func TestBloomAddFollowsArrival(t *testing.T) {
	o := Options{TTL: time.Hour, Slices: 6, Capacity: 20000}
	live, replayed := newDeduper(t, "bloom", o).(*Bloom), newDeduper(t, "bloom", o).(*Bloom)
	var at []time.Time
	for i := range 3000 { // bursts and gaps: closes by load and by time
		ts := t0.Add(time.Duration(i/500) * 7 * time.Minute).Add(time.Duration(i) * time.Millisecond)
		if !live.TestAndAdd(camp, user(i), ts) {
			at = append(at, ts)
			replayed.Add(camp, user(i), ts)
		}
	}
	for i := range live.shards {
		if got, want := accounts(&replayed.shards[i]), accounts(&live.shards[i]); !reflect.DeepEqual(got, want) {
			t.Fatalf("shard %d: replayed %+v, live %+v", i, got, want)
		}
	}
	// Replaying the first pair again puts it into the oldest sub-filter of
	// its shard, not the open one.
	s := replayed.shard(KeyOf(camp, user(0)))
	before := accounts(s)
	replayed.Add(camp, user(0), at[0])
	after := accounts(s)
	if after[0] != before[0] || after[1].n != before[1].n+1 {
		t.Fatalf("re-added pair: accounts %+v, were %+v; want the oldest closed one to take it", after, before)
	}
}

// sameBytes reports whether two windows holding the same pairs estimate
// the same memory: exactly for Bloom; within 8% for Exact, whose shard
// seed differs from one window to the next, so its pairs fall into maps of
// other sizes.
func sameBytes(mode string, got, want int) bool {
	if mode == "bloom" {
		return got == want
	}
	return math.Abs(float64(got-want)) <= 0.08*float64(want)
}

// TestExactLoaderMatchesAdd: pairs replayed through a Loader leave the
// window answering exactly as pairs replayed one by one with Add, across
// slices in and out of the window, and the memory estimate agrees.
func TestExactLoaderMatchesAdd(t *testing.T) {
	o := Options{TTL: time.Hour, Slices: 6}
	slow, fast := newDeduper(t, "exact", o).(*Exact), newDeduper(t, "exact", o).(*Exact)
	// A snapshot-like starting state in both.
	for i := range 100 {
		slow.TestAndAdd(camp, user(i), t0)
		fast.TestAndAdd(camp, user(i), t0)
	}
	l := fast.Loader()
	rng := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		at := t0.Add(time.Duration(rng.IntN(int(3 * time.Hour))))
		u := user(rng.IntN(3000))
		slow.Add(camp, u, at)
		l.Add(camp, u, at)
	}
	l.Close()
	// Add leaves each shard at its own newest slice, the loader all at the
	// newest of all; they agree once both are brought to the same time.
	slow.Advance(t0.Add(3 * time.Hour))
	fast.Advance(t0.Add(3 * time.Hour))
	if slow.Len() != fast.Len() || !sameBytes("exact", fast.Bytes(), slow.Bytes()) {
		t.Fatalf("Len/Bytes: loader %d/%d, Add %d/%d", fast.Len(), fast.Bytes(), slow.Len(), slow.Bytes())
	}
	for _, dt := range []time.Duration{3 * time.Hour, 3*time.Hour + 20*time.Minute, 4 * time.Hour} {
		for i := range 3000 {
			if a, b := slow.Test(camp, user(i), t0.Add(dt)), fast.Test(camp, user(i), t0.Add(dt)); a != b {
				t.Fatalf("user %d at +%s: loader %v, Add %v", i, dt, b, a)
			}
		}
	}
}

// TestBloomManyGenerations covers windows of more than 64 generations,
// whose older generations are screened 64 at a time: a pair is found from
// every generation it can sit in, and forgotten after the window.
func TestBloomManyGenerations(t *testing.T) {
	const slices = 100
	b, err := NewBloom(Options{TTL: slices * time.Minute, Slices: slices, Capacity: 10_000, FalsePositiveRate: 0.001})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < slices; i++ {
		b.TestAndAdd(camp, user(i), t0.Add(time.Duration(i)*time.Minute))
	}
	now := t0.Add((slices - 1) * time.Minute)
	for i := 0; i < slices; i++ {
		if !b.Test(camp, user(i), now) {
			t.Fatalf("pair %d, added %d slices ago, not found", i, slices-1-i)
		}
	}
	if later := now.Add(slices * time.Minute); b.Test(camp, user(slices-1), later.Add(time.Minute)) {
		t.Fatal("pair still found after the window")
	}
}

// TestBlockedSizeIsMinimal: the layout blockedSizeLoad picks meets the
// rate at its load, and one block fewer cannot, whatever k.
func TestBlockedSizeIsMinimal(t *testing.T) {
	for _, tc := range []struct {
		n int
		p float64
	}{{1, 0.5}, {100, 0.01}, {6511, 1.429e-4}, {2604, 1.4e-3}, {50_000, 1e-9}} {
		load := float64(tc.n) + 2*math.Sqrt(float64(tc.n))
		blocks, k := blockedSizeLoad(load, tc.p)
		if r := blockedRate(load/float64(blocks), k); r > tc.p {
			t.Errorf("n=%d p=%g: %d blocks, k=%d give %g", tc.n, tc.p, blocks, k, r)
		}
		if blocks == 1 {
			continue
		}
		for j := uint(1); j <= maxK; j++ {
			if r := blockedRate(load/float64(blocks-1), j); r <= tc.p {
				t.Errorf("n=%d p=%g: %d blocks chosen, but %d with k=%d give %g", tc.n, tc.p, blocks, blocks-1, j, r)
			}
		}
	}
}
