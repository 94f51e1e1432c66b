package sketch

import (
	"errors"
	"io"
	"time"
)

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

	// Add records the pair as counted at time at, in the generation of
	// at's slice, without testing the others: it replays pairs known to
	// have been counted once (a log), and adding a pair twice at the same
	// time changes nothing. Pairs whose slice has left the window are
	// ignored; a slice newer than any seen rotates the window as
	// TestAndAdd would.
	Add(campaign, user []byte, at time.Time)

	// Advance drops the generations that have left the window at now. The
	// structure also rotates lazily on every call; Advance lets an idle
	// shard release memory (Exact) without waiting for traffic.
	Advance(now time.Time)

	// Bytes is the memory the structure holds: exact for Bloom, an
	// estimate for Exact.
	Bytes() int

	// Hasher returns the Hasher the window keys pairs with: Bloom hashes
	// every pair with it; Exact keeps the pairs themselves and holds one
	// only so that every window has a secret to persist. Keys a caller
	// logs for AddKey-style replay must come from it.
	Hasher() Hasher

	// SetSecret replaces the window's secret, and so its Hasher. It is
	// meant for start-up, before concurrent use, to give a window the
	// secret its persisted state was hashed with; it fails once the
	// window holds a pair, whose key the new secret would not find.
	SetSecret(secret [16]byte) error

	// Generations is K+1, the generations kept per shard.
	Generations() int

	// Rotations counts the shard generations recycled so far.
	Rotations() uint64

	// WriteTo writes the window's state (the layout, then every shard's
	// ring position and live generations) for ReadFrom. It locks one shard
	// at a time, so concurrent TestAndAdd calls continue; each shard is
	// copied consistently, the whole is not a single instant.
	WriteTo(w io.Writer) (int64, error)

	// ReadFrom replaces the window's state with one written by WriteTo of a
	// window with the same Options (errors wrapping ErrLayoutMismatch
	// otherwise). It is meant for start-up, before concurrent use. It reads
	// r to its end: bytes after the state are an error. On any error the
	// window is left empty, as its constructor returns it.
	ReadFrom(r io.Reader) (int64, error)
}

// ErrLayoutMismatch is wrapped by ReadFrom errors whose state header names
// another mode or other Options than the receiving window's: the state may
// be sound, but not for this window. The error text says what differs.
var ErrLayoutMismatch = errors.New("sketch: state was written with different options")

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
