package sketch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/axiomhq/hyperloglog"
)

// Reach counts the distinct users of one campaign: in the last hour, the
// last day and in total, by the event time of their impressions.
//
// # Exact, then estimated
//
// Below ReachExact distinct users it is exact: it keeps each user's
// 64-bit hash with the 5-minute bucket it was last seen in (about 40 bytes
// a user). Two users are one only if their keyed 64-bit hashes collide:
// below 1,000 users, a chance under 3·10⁻¹⁴. At the ReachExact-th user it
// switches for good to HyperLogLog (github.com/axiomhq/hyperloglog, the
// LogLog-Beta estimator, sparse while small):
//
//   - total: one sketch of 2¹⁴ registers, relative standard error
//     1.04/√2¹⁴ = 0.81%, at most 16 KiB;
//   - windows: one sketch of 2¹² registers per 5-minute bucket of the last
//     day, merged when read, relative standard error 1.04/√2¹² = 1.63%,
//     at most 4 KiB each, 1.2 MiB for a day of buckets that each hold
//     more than about 3,000 users.
//
// # Windows
//
// Windows are aligned to 5 minutes (ReachBucket): the last hour is the
// buckets from the one holding now−1h to the current one (60 to 65
// minutes), the last day likewise from now−24h (24 h to 24 h 5 min). An
// impression whose event time is older than the last day's first bucket
// counts in the total only; one after now counts at now.
//
// Reach is safe for concurrent use. Its zero value is ready to use.
type Reach struct {
	mu sync.Mutex
	// exact maps a user's hash to the last bucket it was seen in; nil
	// once estimating (or before the first Add).
	exact      map[uint64]int64
	estimating bool
	total      *hyperloglog.Sketch
	ring       *[reachRing]reachSlot
}

// reachSlot is one 5-minute bucket of the ring: bucket n, its sketch.
type reachSlot struct {
	n   int64
	hll *hyperloglog.Sketch
}

const (
	// ReachExact is the number of distinct users from which Reach
	// estimates: below it, every figure is exact.
	ReachExact = 1000
	// ReachBucket is the alignment of Reach's windows.
	ReachBucket = 5 * time.Minute
	// reachRing holds the buckets of a day window: 24 h + the current.
	reachRing = int64(24*time.Hour/ReachBucket) + 1
	// hourBuckets is the number of buckets of the hour window.
	hourBuckets = int64(time.Hour/ReachBucket) + 1

	reachTotalPrecision  = 14
	reachWindowPrecision = 12
)

// ReachBucketOf returns the number of t's 5-minute bucket since the Unix
// epoch, rounding down.
func ReachBucketOf(t time.Time) int64 {
	s := t.Unix()
	b := s / int64(ReachBucket/time.Second)
	if s < 0 && s%int64(ReachBucket/time.Second) != 0 {
		b--
	}
	return b
}

// ReachWindow is one reading of a Reach: LastHour ≤ LastDay ≤ Total.
type ReachWindow struct {
	LastHour, LastDay, Total uint64
	// Estimated is set once the figures are HyperLogLog estimates.
	Estimated bool
}

// Add records that the user whose keyed hash is h had an impression with
// event time at, arriving at now. h must be a uniformly distributed hash
// of the user within the campaign (Hasher.Key's Lo word).
func (r *Reach) Add(h uint64, at, now time.Time) {
	r.AddBucket(h, ReachBucketOf(at), ReachBucketOf(now))
}

// AddBucket is Add with the event's and now's buckets (ReachBucketOf).
func (r *Reach) AddBucket(h uint64, b, now int64) {
	b = min(b, now)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.estimating {
		if old, ok := r.exact[h]; ok {
			if b > old {
				r.exact[h] = b
			}
			return
		}
		if len(r.exact) < ReachExact-1 {
			if r.exact == nil {
				r.exact = make(map[uint64]int64)
			}
			r.exact[h] = b
			return
		}
		r.estimate(now)
	}
	r.insert(h, b, now)
}

// estimate switches to the sketches, moving every exact user into them.
func (r *Reach) estimate(now int64) {
	r.estimating = true
	r.total = newReachSketch(reachTotalPrecision)
	r.ring = new([reachRing]reachSlot)
	for h, b := range r.exact {
		r.insert(h, b, now)
	}
	r.exact = nil
}

func newReachSketch(p uint8) *hyperloglog.Sketch {
	s, err := hyperloglog.NewSketch(p, true)
	if err != nil {
		panic(err) // a constant precision within the library's range
	}
	return s
}

// insert adds h, seen in bucket b ≤ now, to the sketches.
func (r *Reach) insert(h uint64, b, now int64) {
	r.total.InsertHash(h)
	if b <= now-reachRing {
		return // older than the day window: the total only
	}
	s := &r.ring[mod(b, reachRing)]
	switch {
	case s.hll == nil:
		s.n, s.hll = b, newReachSketch(reachWindowPrecision)
	case s.n < b:
		s.n = b
		s.hll.Reset() // a bucket a day old: reuse its storage
	case s.n > b:
		return // the slot already holds a newer bucket: b left the day
	}
	s.hll.InsertHash(h)
}

func mod(a, n int64) int64 {
	m := a % n
	if m < 0 {
		m += n
	}
	return m
}

// Read returns the figures of the windows ending with now.
func (r *Reach) Read(now time.Time) ReachWindow { return r.ReadBucket(ReachBucketOf(now)) }

// ReachFrom returns the first buckets of the last hour and the last day
// windows at now's bucket: a store that keeps reach elsewhere (Redis)
// reads the same windows.
func ReachFrom(now int64) (hour, day int64) { return now - hourBuckets + 1, now - reachRing + 1 }

// ReadBucket is Read with now's bucket.
func (r *Reach) ReadBucket(now int64) ReachWindow {
	hourFrom, dayFrom := ReachFrom(now)
	r.mu.Lock()
	defer r.mu.Unlock()
	var w ReachWindow
	if !r.estimating {
		for _, b := range r.exact {
			if b >= dayFrom {
				w.LastDay++
				if b >= hourFrom {
					w.LastHour++
				}
			}
		}
		w.Total = uint64(len(r.exact))
		return w
	}
	w.Estimated = true
	w.Total = r.total.Clone().Estimate() // Estimate compacts: keep r's as it is
	hour, day := newReachSketch(reachWindowPrecision), newReachSketch(reachWindowPrecision)
	for i := range r.ring {
		s := &r.ring[i]
		if s.hll == nil || s.n < dayFrom || s.n > now {
			continue
		}
		day.Merge(s.hll)
		if s.n >= hourFrom {
			hour.Merge(s.hll)
		}
	}
	// Estimates of nested windows can cross by their error: keep the
	// order every reader expects.
	w.LastDay = min(day.Estimate(), w.Total)
	w.LastHour = min(hour.Estimate(), w.LastDay)
	return w
}

// Bytes estimates the memory r holds, for the memory figures.
func (r *Reach) Bytes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.estimating {
		// A Go map of 16-byte entries costs about 40 bytes an entry
		// with its buckets' overhead.
		return 40 * len(r.exact)
	}
	n := len(r.ring) * 16
	n += sketchBytes(r.total)
	for i := range r.ring {
		if s := r.ring[i].hll; s != nil {
			n += sketchBytes(s)
		}
	}
	return n
}

func sketchBytes(s *hyperloglog.Sketch) int {
	b, _ := s.MarshalBinary()
	return len(b) + 64
}

// reachVersion is the first byte of Reach's binary form.
const reachVersion = 1

var errReachData = errors.New("sketch: malformed reach data")

// AppendBinary appends r's binary form: a version byte, then 0 and the
// exact users (count, then hash and bucket each), or 1, the total sketch
// and the ring's buckets (count, then bucket number and sketch each), each
// sketch after its length.
func (r *Reach) AppendBinary(b []byte) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b = append(b, reachVersion)
	if !r.estimating {
		b = append(b, 0)
		b = binary.AppendUvarint(b, uint64(len(r.exact)))
		for h, n := range r.exact {
			b = binary.LittleEndian.AppendUint64(b, h)
			b = binary.AppendVarint(b, n)
		}
		return b, nil
	}
	b = append(b, 1)
	var err error
	if b, err = appendSketch(b, r.total); err != nil {
		return nil, err
	}
	live := 0
	for i := range r.ring {
		if r.ring[i].hll != nil {
			live++
		}
	}
	b = binary.AppendUvarint(b, uint64(live))
	for i := range r.ring {
		s := &r.ring[i]
		if s.hll == nil {
			continue
		}
		b = binary.AppendVarint(b, s.n)
		if b, err = appendSketch(b, s.hll); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func appendSketch(b []byte, s *hyperloglog.Sketch) ([]byte, error) {
	p, err := s.MarshalBinary()
	if err != nil {
		return nil, err
	}
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...), nil
}

// UnmarshalBinary replaces r's state by the one AppendBinary encoded.
func (r *Reach) UnmarshalBinary(p []byte) error {
	d := reachDecoder{p: p}
	if v := d.byte(); d.err == nil && v != reachVersion {
		return fmt.Errorf("sketch: reach data version %d, want %d", v, reachVersion)
	}
	var next Reach
	switch d.byte() {
	case 0:
		n := d.uvarint()
		if n >= ReachExact || n > uint64(len(d.p))/9 {
			return errReachData
		}
		if n > 0 {
			next.exact = make(map[uint64]int64, n)
		}
		for range n {
			h := d.u64()
			next.exact[h] = d.varint()
		}
		if d.err == nil && len(next.exact) != int(n) {
			return errReachData // a hash twice
		}
	case 1:
		next.estimating = true
		next.total = d.sketch(reachTotalPrecision)
		next.ring = new([reachRing]reachSlot)
		n := d.uvarint()
		if n > uint64(reachRing) {
			return errReachData
		}
		for range n {
			b := d.varint()
			s := &next.ring[mod(b, reachRing)]
			if s.hll != nil {
				return errReachData // two buckets in one slot
			}
			s.n, s.hll = b, d.sketch(reachWindowPrecision)
			if d.err != nil {
				break
			}
		}
	default:
		d.fail()
	}
	if d.err == nil && len(d.p) != 0 {
		d.fail()
	}
	if d.err != nil {
		return d.err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.exact, r.estimating, r.total, r.ring = next.exact, next.estimating, next.total, next.ring
	return nil
}

type reachDecoder struct {
	p   []byte
	err error
}

func (d *reachDecoder) fail() {
	if d.err == nil {
		d.err = errReachData
	}
	d.p = nil
}

func (d *reachDecoder) byte() byte {
	if len(d.p) < 1 {
		d.fail()
		return 0
	}
	v := d.p[0]
	d.p = d.p[1:]
	return v
}

func (d *reachDecoder) u64() uint64 {
	if len(d.p) < 8 {
		d.fail()
		return 0
	}
	v := binary.LittleEndian.Uint64(d.p)
	d.p = d.p[8:]
	return v
}

func (d *reachDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.p)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.p = d.p[n:]
	return v
}

func (d *reachDecoder) varint() int64 {
	v, n := binary.Varint(d.p)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.p = d.p[n:]
	return v
}

// sketch reads a length-prefixed sketch of precision p; a nil sketch
// only with d.err set.
func (d *reachDecoder) sketch(p uint8) *hyperloglog.Sketch {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.p)) {
		d.fail()
		return nil
	}
	s := newReachSketch(p)
	if err := s.UnmarshalBinary(d.p[:n]); err != nil {
		d.fail()
		return nil
	}
	d.p = d.p[n:]
	if !samePrecision(s, p) {
		d.fail()
		return nil
	}
	return s
}

// samePrecision reports whether s has precision p: a sketch of another
// precision could not be merged with the ring's.
func samePrecision(s *hyperloglog.Sketch, p uint8) bool {
	return s.Merge(newReachSketch(p)) == nil
}
