package stats

import (
	"sync/atomic"
	"time"
)

const (
	// Minutes is the number of per-minute buckets a Counter keeps: one day.
	Minutes = 1440
	// HourMinutes and DayMinutes are the widths of the reported windows.
	HourMinutes = 60
	DayMinutes  = Minutes
)

// Counter counts one campaign's impressions per event-time minute over the
// last Minutes minutes, plus a total. Its zero value is ready to use. It is
// safe for concurrent use.
type Counter struct {
	total atomic.Uint64
	// Each bucket packs the minute it counts (high 32 bits, Unix minutes
	// plus minuteBias) and the count (low 32 bits) in one word, so a bucket
	// is claimed for a new minute and counted into with one CAS, with no
	// window where a reader sees a new minute with an old count.
	buckets [Minutes]atomic.Uint64
}

// minuteBias shifts Unix minutes so that a zero bucket means "no minute":
// minute m is stored as m+minuteBias, which stays within 32 bits for
// timestamps from 1970 to beyond the year 9000.
const minuteBias = 1

const countMask = 1<<32 - 1

// Minute returns the Unix minute of t, rounding down.
func Minute(t time.Time) int64 {
	s := t.Unix()
	m := s / 60
	if s < 0 && s%60 != 0 {
		m--
	}
	return m
}

// Add counts one impression of event minute m, observed at minute now.
// Minutes after now are counted at now; minutes older than the ring count in
// Total only.
func (c *Counter) Add(m, now int64) {
	// Total first: a reader loads the buckets before the total, so it
	// never sees a window larger than the total.
	c.total.Add(1)
	if m > now {
		m = now
	}
	if m <= now-Minutes || m < 0 || m+minuteBias > countMask {
		return
	}
	tag := uint64(m+minuteBias) << 32
	b := &c.buckets[m%Minutes]
	for {
		v := b.Load()
		var next uint64
		switch {
		case v&^countMask == tag:
			if v&countMask == countMask {
				return // 4 billion in one minute: saturate rather than wrap
			}
			next = v + 1
		case v < tag:
			next = tag | 1 // the bucket holds an older minute: reclaim it
		default:
			return // the bucket already moved on to a newer minute
		}
		if b.CompareAndSwap(v, next) {
			return
		}
	}
}

// Window is one reading of a Counter. LastHour ≤ LastDay ≤ Total always
// holds, even under concurrent adds.
type Window struct {
	LastHour uint64
	LastDay  uint64
	Total    uint64
}

// Read sums the windows ending with minute now.
func (c *Counter) Read(now int64) Window {
	var w Window
	w.LastHour = c.Sum(now, HourMinutes)
	w.LastDay = w.LastHour + c.Sum(now-HourMinutes, DayMinutes-HourMinutes)
	w.Total = c.total.Load()
	return w
}

// Sum returns the count of the n minutes ending with minute now, n ≤
// Minutes.
func (c *Counter) Sum(now int64, n int) uint64 {
	var sum uint64
	for m := now - int64(n) + 1; m <= now; m++ {
		sum += c.At(m)
	}
	return sum
}

// At returns the count of minute m, or 0 if m has left the ring.
func (c *Counter) At(m int64) uint64 {
	if m < 0 || m+minuteBias > countMask {
		return 0
	}
	v := c.buckets[m%Minutes].Load()
	if v>>32 != uint64(m+minuteBias) {
		return 0
	}
	return v & countMask
}

// Total returns the count of every impression ever added.
func (c *Counter) Total() uint64 { return c.total.Load() }
