package sketch

import (
	"errors"
	"math"
	"testing"
	"time"
)

// TestOptionsValidationEdges: the smallest and largest valid value of
// each bounded option is accepted (TestOptionsValidation refuses the
// values just past them).
func TestOptionsValidationEdges(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"one slice", Options{Slices: 1}},
		{"most slices", Options{Slices: maxSlices}},
		{"slice of exactly 1ms", Options{TTL: 6 * time.Millisecond, Slices: 6}},
		{"capacity of one", Options{Capacity: 1}},
		{"smallest fp rate", Options{FalsePositiveRate: minFPRate, Capacity: 1000}},
		{"max pairs of one", Options{MaxPairs: 1}},
	} {
		if err := tc.o.withDefaults().validate(); err != nil {
			t.Errorf("%s: %v, want valid", tc.name, err)
		}
	}
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"slice of 1ms less 1ns", Options{TTL: 6*time.Millisecond - 1, Slices: 6}},
		{"fp rate below the smallest", Options{FalsePositiveRate: minFPRate / 2}},
	} {
		if err := tc.o.withDefaults().validate(); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%s: got %v, want ErrInvalidOptions", tc.name, err)
		}
	}
}

// TestSliceRate: gens filters at sliceRate(p, gens) each miss a fresh key
// together with probability 1 − p: (1 − p_s)^gens = 1 − p.
func TestSliceRate(t *testing.T) {
	for _, c := range []struct {
		p    float64
		gens int
		want float64 // computed apart from the package
	}{
		{0.001, 9, 0.00011116052494245512},
		{0.01, 2, 0.005012562893380045},
		{1e-12, 1025, 9.756097560980484e-16},
	} {
		got := sliceRate(c.p, c.gens)
		if math.Abs(got-c.want) > 1e-12*c.want {
			t.Errorf("sliceRate(%g, %d) = %.17g, want %.17g", c.p, c.gens, got, c.want)
		}
		if all := -math.Expm1(float64(c.gens) * math.Log1p(-got)); math.Abs(all-c.p) > 1e-9*c.p {
			t.Errorf("sliceRate(%g, %d): %d filters give %.17g", c.p, c.gens, c.gens, all)
		}
	}
}

// TestBlockedRate pins the rate of a blocked filter, Σ_j Poisson(j; λ)·(1 −
// (1 − 1/512)^(kj))^k, against values computed apart from the package with
// the sum taken far into the tail, over the loads a window uses and beyond.
func TestBlockedRate(t *testing.T) {
	for _, c := range []struct {
		lambda float64
		k      uint
		want   float64
	}{
		{35, 10, 0.0014356771364900922},
		{35, 9, 0.0013954922468162932},
		{4, 3, 2.2107678726861786e-05},
		{1000, 1, 0.858169840912442},
		{200, 2, 0.29420626859506577},
		{0.5, 64, 2.264224552689877e-19},
	} {
		if got := blockedRate(c.lambda, c.k); math.Abs(got-c.want) > 1e-9*c.want {
			t.Errorf("blockedRate(%g, %d) = %.17g, want %.17g", c.lambda, c.k, got, c.want)
		}
	}
}

// TestBlockedSizeIsFewestBlocks: blockedSizeExact returns the fewest
// 512-bit blocks for which some k in [1, 64] keeps the rate at p, and the
// best k for them.
func TestBlockedSizeIsFewestBlocks(t *testing.T) {
	bestRate := func(n int, blocks uint) (float64, uint) {
		rate, k := math.Inf(1), uint(0)
		for j := uint(1); j <= maxK; j++ {
			if r := blockedRate(float64(n)/float64(blocks), j); r < rate {
				rate, k = r, j
			}
		}
		return rate, k
	}
	for _, c := range []struct {
		n      int
		p      float64
		blocks uint // computed apart, from bestRate
	}{
		{1000, 0.001, 31},
		{100, 0.01, 2},
		{5000, 1e-6, 377},
		{1, 0.5, 1},
		{20, 1e-9, 4},
		{125, 0.00011116052494245512, 0},
		{3000, 0.01 / 9, 0},
	} {
		m, k := blockedSizeExact(c.n, c.p)
		blocks := m / blockBits
		if m%blockBits != 0 || (c.blocks != 0 && blocks != c.blocks) {
			t.Errorf("blockedSizeExact(%d, %g): m = %d, want %d blocks of %d bits", c.n, c.p, m, c.blocks, blockBits)
			continue
		}
		rate, bestK := bestRate(c.n, blocks)
		if rate > c.p || k != bestK {
			t.Errorf("blockedSizeExact(%d, %g): %d blocks, k %d: rate %g (best k %d), want at most %g", c.n, c.p, blocks, k, blockedRate(float64(c.n)/float64(blocks), k), bestK, c.p)
		}
		if blocks > 1 {
			if fewer, _ := bestRate(c.n, blocks-1); fewer <= c.p {
				t.Errorf("blockedSizeExact(%d, %g): %d blocks, but %d reach rate %g", c.n, c.p, blocks, blocks-1, fewer)
			}
		}
	}
}

// TestPositions pins the unblocked positions of a key (the layout of the
// Redis bitmaps): enhanced double hashing over the key's halves, each
// value mapped to [0, m) by the high word of value·m; the sums wrap.
func TestPositions(t *testing.T) {
	for _, c := range []struct {
		key  Key
		m    uint
		want []uint64 // computed apart from the package
	}{
		{Key{Lo: 0x0123456789abcdef, Hi: 0xfedcba9876543210}, 1000, []uint64{4, 0, 995, 991, 986, 982}},
		{Key{Lo: math.MaxUint64, Hi: math.MaxUint64 - 1}, 1<<40 + 7, []uint64{1<<40 + 6, 1<<40 + 6, 1<<40 + 6, 0}},
	} {
		got := make([]uint64, len(c.want))
		Positions(c.key, c.m, got)
		for i := range got {
			if got[i] != c.want[i] {
				t.Fatalf("Positions(%#x, %d) = %v, want %v", c.key, c.m, got, c.want)
			}
		}
	}
}

// TestUnblockedSize: m is the bits −n·ln p / ln²2 rounded up to a multiple
// of 64, k is ln 2 · m/n rounded, at least 1.
func TestUnblockedSize(t *testing.T) {
	for _, c := range []struct {
		n    int
		p    float64
		m, k uint
	}{
		{100, 0.001, 1472, 10},
		{1000, 0.9, 256, 1},
		{1, 1e-12, 64, 44},
		{7, 0.01, 128, 13},
	} {
		if m, k := unblockedSize(c.n, c.p); m != c.m || k != c.k {
			t.Errorf("unblockedSize(%d, %g) = %d, %d; want %d, %d", c.n, c.p, m, k, c.m, c.k)
		}
	}
}

// TestUnblockedPool: 1000 pairs per TTL in 6 slices are 8 sub-filters of
// 125 pairs, 8 + 6 + 3 slots, each at the rate that keeps 9 filters at
// the target 0.001; invalid options are refused.
func TestUnblockedPool(t *testing.T) {
	p, err := UnblockedPool(Options{Capacity: 1000})
	if err != nil {
		t.Fatal(err)
	}
	want := Pool{Slots: 17, Load: 125, Bits: 2432, Hashes: 13, Rate: 0.00011116052494245512}
	if p.Slots != want.Slots || p.Load != want.Load || p.Bits != want.Bits || p.Hashes != want.Hashes || math.Abs(p.Rate-want.Rate) > 1e-12*want.Rate {
		t.Fatalf("UnblockedPool: %+v, want %+v", p, want)
	}
	if _, err := UnblockedPool(Options{Slices: -1}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("UnblockedPool of invalid options: got %v, want ErrInvalidOptions", err)
	}
}
