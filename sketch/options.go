package sketch

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"time"
)

// Options configure a dedup window. The zero value of each field selects
// its default.
type Options struct {
	// TTL is how long a counted pair blocks repeats. By default 1h.
	TTL time.Duration

	// Slices is K, the number of sub-windows per TTL; K+1 generations are
	// kept. More slices tighten the window (a pair is forgotten between TTL
	// and TTL+TTL/K) at the cost of probing more generations. By default 6.
	Slices int

	// Capacity is the expected number of distinct pairs per TTL. It sizes
	// the Bloom filters; Exact ignores it. By default 10,000,000.
	Capacity int

	// FalsePositiveRate is the target probability that Bloom takes a new
	// pair for a repeat, for the whole layer, not one slice. Exact ignores
	// it. By default 0.001.
	FalsePositiveRate float64

	// MaxPairs bounds the distinct pairs Exact holds in its live
	// generations: at the bound, a new pair is refused (see
	// Exact.TestAndAddLimited) until generations expire. Bloom ignores it.
	// By default (0) Exact is unbounded.
	MaxPairs int

	// Secret keys the window's Hasher (see Hasher and the windows'
	// SetSecret). By default, the zero value, a random secret is drawn
	// with NewSecret at construction: right for a window that lives and
	// dies with its process, not for one whose keys must outlive it
	// (snapshots, logs, Redis), which must keep the secret with them.
	Secret [16]byte
}

// ErrInvalidOptions is wrapped by every constructor error caused by Options.
var ErrInvalidOptions = errors.New("sketch: invalid options")

const (
	maxSlices   = 1024
	maxShards   = 256
	minSlice    = time.Millisecond
	maxK        = 64
	minFPRate   = 1e-12
	shardTarget = 2048 // pairs per shard and slice before another shard pays off
)

func (o Options) withDefaults() Options {
	if o.TTL == 0 {
		o.TTL = time.Hour
	}
	if o.Slices == 0 {
		o.Slices = 6
	}
	if o.Capacity == 0 {
		o.Capacity = 10_000_000
	}
	if o.FalsePositiveRate == 0 {
		o.FalsePositiveRate = 0.001
	}
	return o
}

// hasher returns the Hasher of o.Secret, or of a fresh random secret if it
// is zero.
func (o Options) hasher() Hasher {
	if o.Secret == ([16]byte{}) {
		return NewHasher(NewSecret())
	}
	return NewHasher(o.Secret)
}

func (o Options) validate() error {
	switch {
	case o.Slices < 1 || o.Slices > maxSlices:
		return fmt.Errorf("%w: slices must be in [1, %d], got %d", ErrInvalidOptions, maxSlices, o.Slices)
	case o.TTL < 0 || o.TTL/time.Duration(o.Slices) < minSlice:
		return fmt.Errorf("%w: ttl/slices must be at least %s, got ttl %s with %d slices", ErrInvalidOptions, minSlice, o.TTL, o.Slices)
	case o.Capacity < 1:
		return fmt.Errorf("%w: capacity must be positive, got %d", ErrInvalidOptions, o.Capacity)
	case o.MaxPairs < 0:
		return fmt.Errorf("%w: max pairs must not be negative, got %d", ErrInvalidOptions, o.MaxPairs)
	case !(o.FalsePositiveRate >= minFPRate && o.FalsePositiveRate < 1):
		return fmt.Errorf("%w: false-positive rate must be in [%g, 1), got %g", ErrInvalidOptions, minFPRate, o.FalsePositiveRate)
	}
	return nil
}

// sliceRate is p_s = 1 − (1 − p)^(1/gens), the rate each of gens filters
// may have so that a lookup testing all of them stays at p.
func sliceRate(p float64, gens int) float64 {
	return -math.Expm1(math.Log1p(-p) / float64(gens))
}

// shardCount picks a power of two so that each shard holds about
// shardTarget pairs per slice: enough shards to spread contention, few
// enough that each filter's load stays close to its mean.
func shardCount(perSlice int) int {
	s := perSlice / shardTarget
	if s < 1 {
		return 1
	}
	if s >= maxShards {
		return maxShards
	}
	return 1 << (bits.Len(uint(s)) - 1)
}

// blockedSizeExact returns the bits m and hash count k of one blocked
// sub-filter holding exactly n pairs at rate p: a sub-filter is closed at
// n, so no margin is added.
func blockedSizeExact(n int, p float64) (m, k uint) {
	blocks, k := blockedSizeLoad(float64(n), p)
	return blocks * blockBits, k
}

// blockedSizeLoad returns the blocks and hash count k of one blocked
// filter holding load pairs at false-positive rate p: the fewest blocks for
// which some k gives blockedRate ≤ p.
func blockedSizeLoad(load float64, p float64) (blocks, k uint) {
	best := func(blocks uint) (float64, uint) {
		lambda := load / float64(blocks)
		rate, k := 2.0, uint(1)
		for j := uint(1); j <= maxK; j++ {
			r := blockedRate(lambda, j)
			if r > rate {
				break // unimodal in k
			}
			rate, k = r, j
		}
		return rate, k
	}
	// From one bit per pair (never enough) upwards, doubling, then bisect.
	lo, hi := uint(1), max(1, uint(load/blockBits))
	for {
		if r, _ := best(hi); r <= p {
			break
		}
		lo, hi = hi, 2*hi
	}
	for lo < hi {
		mid := lo + (hi-lo)/2
		if r, _ := best(mid); r <= p {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	_, k = best(hi)
	return hi, k
}

// blockedRate is the false-positive rate of a blocked Bloom filter whose
// blocks hold lambda pairs on average, k positions each drawn uniformly in
// the key's block: the number of pairs in a block is Poisson(lambda), and
// a block holding j pairs answers a fresh key wrongly with probability
// (1 − (1 − 1/B)^(kj))^k. Blocking costs bits: the crowded blocks raise
// the rate above the unblocked filter's at the same m.
func blockedRate(lambda float64, k uint) float64 {
	q := math.Log1p(-1.0/blockBits) * float64(k)
	var rate float64
	// Sum to well past the mean; later terms are below 1e-15 of the total.
	top := int(lambda + 12*math.Sqrt(lambda) + 30)
	for j := 0; j <= top; j++ {
		lg, _ := math.Lgamma(float64(j) + 1)
		w := math.Exp(float64(j)*math.Log(lambda) - lambda - lg)
		if j == 0 {
			w = math.Exp(-lambda)
		}
		rate += w * math.Pow(-math.Expm1(q*float64(j)), float64(k))
	}
	return rate
}

func errorf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, args...)...)
}

// Positions fills pos with the key's k bit positions in an unblocked filter
// of m bits (see UnblockedPool), by enhanced double hashing
// (Kirsch–Mitzenmacher) over the two halves of the key, each 64-bit value
// mapped to [0, m) by multiply-shift.
func Positions(key Key, m uint, pos []uint64) {
	h1, h2 := key.Lo, key.Hi|1
	for i := range pos {
		hi, _ := bits.Mul64(h1, uint64(m))
		pos[i] = hi
		h1 += h2
		h2 += uint64(i) + 1
	}
}

// subFiltersPerTTL is the least G: a Bloom window's capacity per TTL is
// spread over G sub-filters of Capacity/G pairs each. More make the pool's
// memory closer to the live pairs (a sub-filter closed early by the clock
// wastes less), at the price of more sub-filters to probe per lookup. 8
// keeps the default layout under 2× the fixed-slice one (docs/DESIGN.md,
// "Bursts").
const subFiltersPerTTL = 8

// subFilters is G for K slices: at least subFiltersPerTTL, and at least K,
// so that the K+1 sub-filters the clock alone can close in a window are
// no larger than a slice's share of the capacity.
func subFilters(slices int) int { return max(subFiltersPerTTL, slices) }

// Pool describes a Bloom window kept as a pool of sub-filters, the layout
// that holds its false-positive bound under any arrival pattern (see the
// package doc): at most Slots sub-filters of Bits bits and Hashes
// positions are live at once (per shard in process, per campaign in
// Redis), each taking at most Load pairs, all within one slice of time
// (TTL/K from its first pair to its last). A sub-filter is freed once its
// last pair is TTL old.
//
// Why these numbers: if no TTL-long interval holds more than c pairs, the
// live sub-filters hold at most c + Load pairs (the pairs of the last TTL,
// plus the older part of the one sub-filter that straddles its start), so
// at most c/Load + 1 of them can be full; a false-positive rate f(n) that
// grows faster than n makes the sum over all live sub-filters at most
// (c/Load + 1)·f(Load) = (G+1)·f(Load), which Rate keeps at the target.
// Sub-filters closed by the clock before they fill are at most K+1 in any
// window of TTL + TTL/K, and one more is open: Slots = G + K + 3.
type Pool struct {
	Slots  int     // P, the sub-filters kept at most
	Load   int     // L, the pairs one sub-filter takes before it is closed
	Bits   uint    // m, bits of one sub-filter
	Hashes uint    // k, positions per pair
	Rate   float64 // f, one full sub-filter's false-positive rate
}

// poolFor returns the pool for c pairs per TTL in one shard (or campaign)
// of a window of K slices at target p, sized by size (blocked or not).
func poolFor(c float64, slices int, p float64, size func(n int, p float64) (m, k uint)) Pool {
	load := max(1, int(math.Ceil(c/float64(subFilters(slices)))))
	g := int(math.Ceil(c / float64(load)))
	rate := sliceRate(p, g+1)
	m, k := size(load, rate)
	return Pool{Slots: g + slices + 3, Load: load, Bits: m, Hashes: k, Rate: rate}
}

// UnblockedPool returns the pool of a window of the given Options kept for
// one campaign in unblocked bitmaps (in Redis, where a probe is a round of
// bit reads, not cache lines): Capacity pairs per TTL per campaign, no
// shards, the same false-positive guarantee as Bloom. Positions maps a key
// to its Hashes positions in Bits.
func UnblockedPool(o Options) (Pool, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return Pool{}, err
	}
	return poolFor(float64(o.Capacity), o.Slices, o.FalsePositiveRate, unblockedSize), nil
}

// unblockedSize returns the bits m (a multiple of 64) and hash count k of
// one unblocked filter holding exactly n pairs at false-positive rate p:
// a sub-filter is closed at n, so no margin is added.
func unblockedSize(n int, p float64) (m, k uint) {
	bitsNeeded := math.Ceil(-float64(n) * math.Log(p) / (math.Ln2 * math.Ln2))
	m = (uint(bitsNeeded) + 63) &^ 63
	k = uint(math.Round(math.Ln2 * float64(m) / float64(n)))
	return m, max(1, min(k, maxK))
}
