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

func (o Options) validate() error {
	switch {
	case o.Slices < 1 || o.Slices > maxSlices:
		return fmt.Errorf("%w: slices must be in [1, %d], got %d", ErrInvalidOptions, maxSlices, o.Slices)
	case o.TTL < 0 || o.TTL/time.Duration(o.Slices) < minSlice:
		return fmt.Errorf("%w: ttl/slices must be at least %s, got ttl %s with %d slices", ErrInvalidOptions, minSlice, o.TTL, o.Slices)
	case o.Capacity < 1:
		return fmt.Errorf("%w: capacity must be positive, got %d", ErrInvalidOptions, o.Capacity)
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

// filterSize returns the bits m (a multiple of 64) and hash count k of one
// filter holding n pairs at false-positive rate p. Keys spread over shards
// binomially, so the filter is sized for two standard deviations above its
// mean load: few shards ever run above their design point.
func filterSize(n int, p float64) (m, k uint) {
	load := float64(n) + 2*math.Sqrt(float64(n))
	bitsNeeded := math.Ceil(-load * math.Log(p) / (math.Ln2 * math.Ln2))
	m = (uint(bitsNeeded) + 63) &^ 63
	k = uint(math.Round(math.Ln2 * float64(m) / load))
	return m, max(1, min(k, maxK))
}

func errorf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, args...)...)
}

// FilterLayout returns the bits m and hash count k of one generation of a
// window of the given Options kept as a single filter, not sharded: the
// sizing a window of one campaign kept elsewhere (in Redis) uses, with the
// same false-positive guarantee as Bloom.
func FilterLayout(o Options) (m, k uint, err error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return 0, 0, err
	}
	perSlice := (o.Capacity + o.Slices - 1) / o.Slices
	m, k = filterSize(perSlice, sliceRate(o.FalsePositiveRate, o.Slices+1))
	return m, k, nil
}

// Positions fills pos with the key's k bit positions in a filter of m
// bits, by the same enhanced double hashing as Bloom.
func Positions(key Key, m uint, pos []uint64) {
	h1, h2 := key.Lo, key.Hi|1
	for i := range pos {
		hi, _ := bits.Mul64(h1, uint64(m))
		pos[i] = hi
		h1 += h2
		h2 += uint64(i) + 1
	}
}
