package sketch

import "time"

// Deduper remembers counted pairs for a TTL. Both implementations, Bloom and
// Exact, are safe for concurrent use.
type Deduper interface {
	// TestAndAdd reports whether the pair (campaign, user) was counted
	// within the window ending at now and, if it was not, records it as
	// counted at now. Of many concurrent calls for one new pair, exactly
	// one returns false. The slices are not retained.
	TestAndAdd(campaign, user []byte, now time.Time) (seen bool)

	// Test reports whether the pair was counted within the window ending
	// at now, without recording it.
	Test(campaign, user []byte, now time.Time) (seen bool)

	// Advance drops the generations that have left the window at now. The
	// structure also rotates lazily on every call; Advance lets an idle
	// shard release memory (Exact) without waiting for traffic.
	Advance(now time.Time)

	// Bytes is the memory the structure holds: exact for Bloom, an
	// estimate for Exact.
	Bytes() int

	// Generations is K+1, the generations kept per shard.
	Generations() int

	// Rotations counts the shard generations recycled so far.
	Rotations() uint64
}

// New returns a Bloom or an Exact window; mode is "bloom" or "exact".
func New(mode string, o Options) (Deduper, error) {
	switch mode {
	case "bloom":
		return NewBloom(o)
	case "exact":
		return NewExact(o)
	}
	return nil, errorf("unknown dedup mode %q (want bloom or exact)", mode)
}
