package sketch

import (
	"encoding/binary"
	"math"
	"testing"
)

// exactReachData is the binary form of an exact Reach holding hashes,
// each in bucket 7.
func exactReachData(hashes []uint64) []byte {
	b := binary.AppendUvarint([]byte{reachVersion, 0}, uint64(len(hashes)))
	for _, h := range hashes {
		b = binary.LittleEndian.AppendUint64(b, h)
		b = binary.AppendVarint(b, 7)
	}
	return b
}

// TestReachUnmarshalRefusesExactBeyondThreshold: exact data holds at most
// ReachExact−1 users (the ReachExact-th switches to estimating), and each
// hash once; data breaking either is refused, not restored as a Reach
// that could never have been written.
func TestReachUnmarshalRefusesExactBeyondThreshold(t *testing.T) {
	hashes := make([]uint64, ReachExact)
	for i := range hashes {
		hashes[i] = uint64(i) * 0x9e3779b97f4a7c15
	}
	var r Reach
	if err := r.UnmarshalBinary(exactReachData(hashes[:ReachExact-1])); err != nil {
		t.Fatalf("ReachExact−1 exact users refused: %v", err)
	}
	if w := r.ReadBucket(7); w.Total != ReachExact-1 || w.LastDay != ReachExact-1 || w.Estimated {
		t.Fatalf("restored %+v, want %d exact users", w, ReachExact-1)
	}
	if err := r.UnmarshalBinary(exactReachData(hashes)); err == nil {
		t.Fatalf("%d exact users restored, want an error", ReachExact)
	}
	if err := r.UnmarshalBinary(exactReachData([]uint64{1, 2, 1})); err == nil {
		t.Fatal("a hash twice restored, want an error")
	}
	if w := r.ReadBucket(7); w.Total != ReachExact-1 {
		t.Fatalf("a refused restore changed the Reach: %+v", w)
	}
}

// TestReachEstimatedWindows: once estimating, the current bucket counts in
// the hour and the day, a bucket two hours old in the day only, one two
// days old in the total only (the short counterpart of TestReachError,
// within 5%).
func TestReachEstimatedWindows(t *testing.T) {
	const now, per = int64(1_000_000), 3000
	var r Reach
	h := uint64(0)
	next := func() uint64 { h++; return splitmix(h) }
	for _, b := range []int64{now - 2*288, now - 24, now} {
		for range per {
			r.AddBucket(next(), b, now)
		}
	}
	w := r.ReadBucket(now)
	near := func(got uint64, want float64) bool { return math.Abs(float64(got)-want) <= 0.05*want }
	if !w.Estimated || !near(w.LastHour, per) || !near(w.LastDay, 2*per) || !near(w.Total, 3*per) {
		t.Fatalf("Reach %+v, want about %d / %d / %d", w, per, 2*per, 3*per)
	}
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}
