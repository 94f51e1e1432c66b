// Package sketch holds the dedup structures of impressiond: given a
// (campaign, user) pair and its arrival time, decide whether the pair was
// already counted within a time-to-live.
//
// # Window
//
// The TTL is cut into K slices of TTL/K each (Options.Slices). Each slice
// has one generation (a Bloom filter in Bloom, a hash set in Exact), and
// K+1 generations are kept: the current slice's and the K before it. A pair
// is added to the current generation only when it is counted, and a lookup
// tests every live generation. On each slice boundary the oldest generation
// is dropped and reused as the new current one; the other K are untouched,
// so nothing is forgotten all at once.
//
// Time is arrival time, passed in by the caller, never an impression's own
// timestamp. A pair counted at time t sits in the generation of its slice
// until that slice is K+1 slices old, so repeats arriving at t+d are
//
//   - never counted while d < TTL (Bloom filters have no false negatives),
//   - always counted once d > TTL + TTL/K (in Bloom mode unless the repeat is
//     a false positive, see below),
//
// and in between it depends on where t fell within its slice. Repeats do not
// extend the window: the window is fixed, not sliding.
//
// # False positives (Bloom)
//
// A lookup tests K+1 filters, so a fresh pair is wrongly taken for a repeat
// with probability 1 − Π(1 − p_i). To meet the target p of the whole layer,
// every slice filter is sized for
//
//	p_s = 1 − (1 − p)^(1/(K+1))    (≈ p/(K+1))
//
// and for n = Capacity/K pairs (split over the shards, each sized two
// standard deviations above its mean load). The filters are blocked: a key
// maps to one 512-bit block (a cache line) and sets k bits in it, so a
// lookup reads one line per generation instead of k. Blocks hold
// Poisson(λ) pairs, λ = n·512/m, and a fresh key is a false positive with
// probability
//
//	Σ_j P(j; λ) · (1 − (1 − 1/512)^(k·j))^k
//
// higher than an unblocked filter's at the same m because pairs crowd some
// blocks; m is the smallest number of blocks, and k the count, for which
// that sum is at most p_s. While distinct pairs per TTL stay within
// Capacity, a new pair is taken for a repeat with probability at most p.
// The whole layer holds (K+1)·m bits, fixed at construction: memory never
// grows with traffic. Against the bound for optimal unblocked filters,
//
//	(K+1)/K · Capacity · log2((K+1)/p) / ln 2 bits
//
// (21.5 bits per pair for K=6, p=0.1%), blocking costs 16% at p=0.1% (25.0
// bits per pair) and 10% at p=1%. If a burst puts more than Capacity/K pairs
// into one slice, that slice's filter fills up and the false-positive rate
// rises (undercounting by that rate) until the slice ages out, K+1 slices
// later; nothing else degrades: no pair is ever counted twice, no memory
// is added.
//
// The newest filters of all shards are one contiguous region, where most
// repeats are found; the K older filters of a shard are stored interleaved
// by block, so the K older blocks of a key are adjacent in memory and a
// fresh key costs one short run instead of K lines on K pages.
//
// Exact keeps sets of the pairs themselves instead: it never takes a new
// pair for a repeat, and its memory grows with the distinct pairs of the
// last K+1 slices, up to Options.MaxPairs pairs: at the bound a new pair is
// refused (ErrFull from TestAndAddLimited) and not recorded, until
// generations expire; repeats are still found.
//
// # Concurrency
//
// Both structures split the key space into shards, each with its own mutex
// and its own generations, so requests on different keys rarely contend and
// no request serialises the others. Rotation is lazy: a shard catches up
// with the clock whenever it is touched, or when Advance is called.
package sketch
