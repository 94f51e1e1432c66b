// Package sketch holds the dedup structures of impressiond: given a
// (campaign, user) pair and its arrival time, decide whether the pair was
// already counted within a time-to-live.
//
// # Window
//
// The TTL is cut into K slices of TTL/K each (Options.Slices). Time is
// arrival time, passed in by the caller, never an impression's own
// timestamp. A pair is recorded only when it is counted, and a lookup
// tests every live generation.
//
// Exact keeps one generation (a hash set) per slice, K+1 of them: the
// current slice's and the K before it. On each slice boundary the oldest is
// dropped; the other K are untouched, so nothing is forgotten all at once.
//
// Bloom keeps, per shard, a pool of sub-filters. The open one takes the
// counted pairs until it holds its design load or its first pair is a
// slice old; it is then closed and a fresh one opened. A closed sub-filter
// is freed once its last pair is TTL old. A sub-filter spans less than a
// slice, so its pairs are freed between TTL and TTL + TTL/K after they
// were counted.
//
// In both, a pair counted at time t blocks repeats arriving at t+d
//
//   - never counted while d < TTL (Bloom filters have no false negatives),
//   - always counted once d > TTL + TTL/K (in Bloom mode unless the repeat is
//     a false positive, see below),
//
// and in between it depends on where t fell within its slice (Exact) or
// its sub-filter (Bloom). Repeats do not extend the window: the window is
// fixed, not sliding.
//
// # False positives (Bloom)
//
// Suppose no TTL-long interval holds more than c pairs of a shard (its
// share of Capacity, sized two standard deviations above its mean). The
// live sub-filters then hold at most c pairs that are younger than the TTL,
// plus the older part of the one sub-filter that straddles the TTL's start
// (sub-filters fill one after the other), so at most c + L pairs, where L
// = c/G is a sub-filter's design load (G = max(8, K)). A sub-filter's rate
// f(n) grows faster than its load n, so the rates of all live sub-filters
// add up to at most (c/L + 1)·f(L) = (G+1)·f(L), and each sub-filter is
// sized for
//
//	f = 1 − (1 − p)^(1/(G+1))    (≈ p/(G+1))
//
// at exactly L pairs (it is closed there, so it needs no margin). A fresh
// pair is therefore wrongly taken for a repeat with probability at most p,
// for every arrival pattern within Capacity per TTL: even traffic, all of it
// in one minute, or bursts in consecutive slices.
//
// The sub-filters are blocked: a key maps to one 512-bit block (a cache
// line) and sets k bits in it, so a lookup reads one line per sub-filter
// instead of k. Blocks hold Poisson(λ) pairs, λ = L·512/m, and a fresh key
// is a false positive with probability
//
//	Σ_j P(j; λ) · (1 − (1 − 1/512)^(k·j))^k
//
// higher than an unblocked filter's at the same m because pairs crowd some
// blocks; m is the smallest number of blocks, and k the count, for which
// that sum is at most f.
//
// Memory is P = G + K + 3 sub-filters per shard, allocated once: at most
// G + 1 full ones and K + 1 closed early by the clock (one per slice) can
// be live within the assumption, and one is open. It never grows with
// traffic. At the defaults (10M pairs, 0.1%, 6 slices) that is 55.5 MiB,
// 1.87 times the layout of one filter per slice it replaced, which held
// its rate only when traffic was spread evenly over the slices.
//
// Beyond the assumption (more than Capacity pairs per TTL), the pool runs
// out of free sub-filters: the open one keeps taking pairs past its design
// load, so the rate rises (and its pairs stay blocked until its last pair
// is TTL old); no pair is ever counted twice, no memory is added, and
// Bloom.Stats reports it.
//
// The open sub-filters of all shards are one contiguous region, where most
// repeats are found; the closed sub-filters of a shard are stored
// interleaved by block, so the blocks of a key in all of them are adjacent
// in memory and a fresh key costs one short run instead of a line per
// sub-filter on as many pages.
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
//
// It owns the dedup structures and nothing else: it knows no HTTP, JSON,
// campaigns or storage, and must not import the other packages of this
// module (tracker decides when a window is written and read).
//
// # Frequency
//
// Frequency counts the exposures of a pair, by its 64-bit key, in windows
// of 1 minute to 168 hours, for frequency caps. A window w is counted in
// slices aligned to the Unix epoch, the coarsest of 1m, 10m, 1h and 6h
// that fits six times into w, or 1m under 6 minutes (FrequencySlice):
// Count(key, w, now) is the exposures in the slices from now−w's to now's,
// so all of (now−w, now] and less than one slice before it, and none of a
// slice after now's. This holds for a now at most a minute behind the
// latest time passed to Add or Advance.
//
// FrequencyExact counts exactly that; pairs whose keys collide count as
// one. Each pair keeps (slice, count) cells, merged into aligned coarser
// cells once no finer window reads them (which changes no answer) and
// dropped after 174 hours: at most 163 cells, about 60 bytes for a pair
// with one.
//
// FrequencySketch never counts less, in memory fixed at construction:
// per level a ring of tagged slots, each a blocked count-min table with
// conservative update, 3.7 KB per pair of daily capacity. At capacity,
// about 1% of pairs count more than their exposures in 24-hour windows
// (0.3% in 1-hour ones), by 0.02 on average; see NewFrequencySketch.
package sketch
