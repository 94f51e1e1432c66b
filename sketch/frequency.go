package sketch

import (
	"io"
	"time"
)

// Frequency counts exposures of pairs, for frequency caps: how many times
// was the pair with this key exposed in the last w? Both implementations,
// FrequencyExact and FrequencySketch, count in the same slices (see
// FrequencySlice): Count(key, w, now) is the number of exposures recorded
// whose slice is one of those from the slice of now−w to the slice of now.
// That span covers (now−w, now] entirely and reaches back less than one
// slice further; exposures recorded in slices after now's are not counted.
// FrequencyExact answers exactly that, FrequencySketch never less.
//
// Both guarantee their answers for a now at most one minute behind the
// latest time passed to Add or Advance (a Count whose coarse clock was read
// just before a tick, or a concurrent adder whose clock is a little ahead).
// A now further behind may find a pair's cells merged (FrequencyExact then
// counts a merged cell whole where it overlaps the span: more, not less)
// or, from 174 hours behind, dropped; FrequencySketch may find slots
// recycled, and then count less.
type Frequency interface {
	// Add records one exposure of the pair key at time at (its arrival
	// time). Safe for concurrent use.
	Add(key uint64, at time.Time)

	// Count returns the exposures of key in the window of length w ending
	// at now: those in the slices from now−w's to now's, whose length
	// FrequencySlice(w) gives. Never fewer than the true number. w is
	// clamped to [MinFrequencyWindow, MaxFrequencyWindow]. Safe for
	// concurrent use with Add.
	Count(key uint64, w time.Duration, now time.Time) uint64

	// CountWindows sets dst[i] to Count(key, ws[i], now) for every
	// window, reading the pair once where the implementation can.
	CountWindows(key uint64, ws []time.Duration, now time.Time, dst []uint64)

	// Prefetch loads, without using it, the memory that counting each of
	// keys at now reads first: called for a batch of keys before counting
	// them, it lets their cache misses overlap instead of each waiting for
	// the one before. It changes no answer and allocates nothing; an
	// implementation may do nothing.
	Prefetch(keys []uint64, now time.Time)

	// Advance does time-driven upkeep at now (pre-clearing slots about to
	// be reused, freeing pairs with no exposure left in any window); the
	// service calls it every second. It never changes what Count answers
	// for any window at a now at most a minute behind it.
	Advance(now time.Time)

	// Bytes is the memory held: fixed at construction for the sketch, an
	// estimate of the heap for the exact counter.
	Bytes() int64

	// WriteTo writes the whole state: versioned, length-prefixed and
	// checksummed. It may run concurrently with Add and Advance; a snapshot
	// taken while adds go on may or may not include them.
	WriteTo(w io.Writer) (int64, error)

	// ReadFrom replaces the state of a freshly constructed value of the
	// same kind and parameters with one WriteTo wrote. A state of another
	// kind or parameters (wrapping ErrLayoutMismatch), a damaged or
	// truncated one, or bytes after it are an error, never a panic; on
	// error the value is left empty. It must not run concurrently with
	// other methods.
	ReadFrom(r io.Reader) (int64, error)
}

const (
	// MinFrequencyWindow and MaxFrequencyWindow bound the windows Count
	// reads; a shorter or longer w is clamped into them.
	MinFrequencyWindow = time.Minute
	MaxFrequencyWindow = 168 * time.Hour
)

var (
	_ Frequency = (*FrequencyExact)(nil)
	_ Frequency = (*FrequencySketch)(nil)
)

// The four slice granularities, in seconds, finest first. Each divides the
// next, and all are aligned to the Unix epoch, so a slice of one level is
// a union of whole slices of every finer level.
var freqSlice = [freqLevels]int64{60, 600, 3600, 6 * 3600}

// freqReads is the most slices a window of each level reads: one more
// than the window's length in slices, rounded up (w < 60m at 1m, < 6h at
// 10m, < 36h at 1h, ≤ 168h at 6h).
var freqReads = [freqLevels]int64{61, 37, 37, 29}

const freqLevels = 4

// FrequencySlice returns the slice a window of length w is counted in: the
// coarsest of 1m, 10m, 1h and 6h that fits six times into w, and 1m for w
// under 6 minutes. The slice is thus at most w/6, as the dedup window's
// slices are TTL/6, except for windows under 6 minutes.
func FrequencySlice(w time.Duration) time.Duration {
	return time.Duration(freqSlice[freqLevel(w)]) * time.Second
}

// freqLevel returns the index in freqSlice of FrequencySlice(w).
func freqLevel(w time.Duration) int {
	for l := freqLevels - 1; l > 0; l-- {
		if w >= 6*time.Duration(freqSlice[l])*time.Second {
			return l
		}
	}
	return 0
}

// freqClamp clamps a window into [MinFrequencyWindow, MaxFrequencyWindow].
func freqClamp(w time.Duration) time.Duration {
	return min(max(w, MinFrequencyWindow), MaxFrequencyWindow)
}

// freqSpan returns the level of window w and the first and last slice
// indexes Count reads for it at now.
func freqSpan(w time.Duration, now time.Time) (level int, lo, hi int64) {
	w = freqClamp(w)
	level = freqLevel(w)
	g := freqSlice[level]
	return level, floorDiv(now.Add(-w).Unix(), g), floorDiv(now.Unix(), g)
}

// floorDiv is a/b rounded towards minus infinity, for b > 0: slice
// indexes of times before the epoch stay aligned.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}
