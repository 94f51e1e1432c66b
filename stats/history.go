package stats

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

const (
	// HistoryDays is how many days of hourly counts a History keeps: the
	// hours of the current day and the 89 before it.
	HistoryDays = 90
	// dayChunk is how many days one chunk of daily counts holds.
	dayChunk = 64
)

// History counts one campaign's impressions per event-time hour over the
// last HistoryDays days, and per event-time day for as long as it lives. Its
// memory follows the days that have impressions: 720 bytes of ring, 216
// bytes per day with impressions among the last HistoryDays (24 hourly
// counts), and 536 bytes per 64-day period with any (64 daily counts). Its
// zero value is ready to use. It is safe for concurrent use; adds take no
// lock except when a 64-day period gets its first impression.
type History struct {
	hours [HistoryDays]atomic.Pointer[hourChunk] // day d in slot d mod HistoryDays
	days  atomic.Pointer[map[int64]*dayCounts]   // by d / dayChunk, copied on write
	mu    sync.Mutex                             // serialises writers of days
}

// hourChunk holds the 24 hourly counts of one day.
type hourChunk struct {
	day int64
	n   [24]atomic.Uint64
}

// dayCounts holds the daily counts of the 64 days from period × 64.
type dayCounts struct {
	n [dayChunk]atomic.Uint64
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// DayOf and HourOf return the Unix day and hour of Unix minute m.
func DayOf(m int64) int64  { return floorDiv(m, DayMinutes) }
func HourOf(m int64) int64 { return floorDiv(m, HourMinutes) }

// Add counts one impression of event minute m, observed at minute now:
// in its hour while that hour is among the last HistoryDays days, and in
// its day. Minutes after now are counted at now.
func (h *History) Add(m, now int64) {
	if m > now {
		m = now
	}
	day := DayOf(m)
	if day > DayOf(now)-HistoryDays {
		if c := h.hourChunk(day); c != nil {
			c.n[HourOf(m)-day*24].Add(1)
		}
	}
	p := floorDiv(day, dayChunk)
	h.period(p).n[day-p*dayChunk].Add(1)
}

// hourChunk returns the chunk of day, creating it in its slot unless the
// slot already holds a later day (then nil: day has left the ring).
func (h *History) hourChunk(day int64) *hourChunk {
	slot := &h.hours[day-floorDiv(day, HistoryDays)*HistoryDays]
	var fresh *hourChunk
	for {
		c := slot.Load()
		switch {
		case c != nil && c.day == day:
			return c
		case c != nil && c.day > day:
			return nil
		}
		if fresh == nil {
			fresh = &hourChunk{day: day}
		}
		if slot.CompareAndSwap(c, fresh) {
			return fresh
		}
	}
}

// period returns the daily counts of period p, creating them.
func (h *History) period(p int64) *dayCounts {
	if m := h.days.Load(); m != nil {
		if c := (*m)[p]; c != nil {
			return c
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	old := h.days.Load()
	if old != nil {
		if c := (*old)[p]; c != nil {
			return c
		}
	}
	next := make(map[int64]*dayCounts, 1)
	if old != nil {
		for k, v := range *old {
			next[k] = v
		}
	}
	c := new(dayCounts)
	next[p] = c
	h.days.Store(&next)
	return c
}

// Hour returns the count of Unix hour hr, 0 if it left the ring (or had
// no impression).
func (h *History) Hour(hr int64) uint64 {
	day := floorDiv(hr, 24)
	c := h.hours[day-floorDiv(day, HistoryDays)*HistoryDays].Load()
	if c == nil || c.day != day {
		return 0
	}
	return c.n[hr-day*24].Load()
}

// Day returns the count of Unix day d.
func (h *History) Day(d int64) uint64 {
	m := h.days.Load()
	if m == nil {
		return 0
	}
	p := floorDiv(d, dayChunk)
	c := (*m)[p]
	if c == nil {
		return 0
	}
	return c.n[d-p*dayChunk].Load()
}

// FirstDay returns the first Unix day with an impression, and false if
// there is none.
func (h *History) FirstDay() (int64, bool) {
	m := h.days.Load()
	if m == nil {
		return 0, false
	}
	ps := make([]int64, 0, len(*m))
	for p := range *m {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	for _, p := range ps {
		c := (*m)[p]
		for i := range c.n {
			if c.n[i].Load() > 0 {
				return p*dayChunk + int64(i), true
			}
		}
	}
	return 0, false
}

// Bytes returns the memory the History holds, in bytes: its ring and
// every chunk.
func (h *History) Bytes() int {
	n := HistoryDays*8 + 8 + 8 + 8 // ring, days pointer, mutex
	for i := range h.hours {
		if h.hours[i].Load() != nil {
			n += 8 + 24*8
		}
	}
	if m := h.days.Load(); m != nil {
		n += len(*m) * (8 + 8 + dayChunk*8) // key, pointer, counts (the map's own overhead aside)
	}
	return n
}

// AppendBinary appends the History's state: the number of hour chunks
// (uint32), each as its day (int64) and 24 counts (uint64); then the
// number of day chunks (uint32), each as its period (int64) and 64 counts
// (uint64), all little-endian, in increasing order. A chunk of only zeros
// is left out. Concurrent adds may or may not be in it.
func (h *History) AppendBinary(b []byte) ([]byte, error) {
	var hours []*hourChunk
	for i := range h.hours {
		if c := h.hours[i].Load(); c != nil && !zero(c.n[:]) {
			hours = append(hours, c)
		}
	}
	slices.SortFunc(hours, func(a, b *hourChunk) int { return int(a.day - b.day) })
	b = binary.LittleEndian.AppendUint32(b, uint32(len(hours)))
	for _, c := range hours {
		b = binary.LittleEndian.AppendUint64(b, uint64(c.day))
		for i := range c.n {
			b = binary.LittleEndian.AppendUint64(b, c.n[i].Load())
		}
	}
	var ps []int64
	if m := h.days.Load(); m != nil {
		for p, c := range *m {
			if !zero(c.n[:]) {
				ps = append(ps, p)
			}
		}
	}
	slices.Sort(ps)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(ps)))
	for _, p := range ps {
		c := (*h.days.Load())[p]
		b = binary.LittleEndian.AppendUint64(b, uint64(p))
		for i := range c.n {
			b = binary.LittleEndian.AppendUint64(b, c.n[i].Load())
		}
	}
	return b, nil
}

func zero(n []atomic.Uint64) bool {
	for i := range n {
		if n[i].Load() != 0 {
			return false
		}
	}
	return true
}

var errHistory = errors.New("stats: malformed history state")

// UnmarshalBinary replaces h's state by AppendBinary's encoding. It
// refuses trailing bytes, chunks out of order or repeated, and more hour
// chunks than the ring holds or two in one slot. h must not be in use.
func (h *History) UnmarshalBinary(data []byte) error {
	for i := range h.hours {
		h.hours[i].Store(nil)
	}
	h.days.Store(nil)
	u32 := func() (uint32, bool) {
		if len(data) < 4 {
			return 0, false
		}
		v := binary.LittleEndian.Uint32(data)
		data = data[4:]
		return v, true
	}
	nh, ok := u32()
	if !ok || nh > HistoryDays || uint64(len(data)) < uint64(nh)*(8+24*8) {
		return errHistory
	}
	last := int64(0)
	for i := range nh {
		day := int64(binary.LittleEndian.Uint64(data))
		data = data[8:]
		if i > 0 && day <= last {
			return fmt.Errorf("%w: hour chunks out of order", errHistory)
		}
		last = day
		slot := &h.hours[day-floorDiv(day, HistoryDays)*HistoryDays]
		if c := slot.Load(); c != nil {
			return fmt.Errorf("%w: two hour chunks in one slot", errHistory)
		}
		c := &hourChunk{day: day}
		for j := range c.n {
			c.n[j].Store(binary.LittleEndian.Uint64(data))
			data = data[8:]
		}
		slot.Store(c)
	}
	nd, ok := u32()
	if !ok || uint64(len(data)) != uint64(nd)*(8+dayChunk*8) {
		return errHistory
	}
	if nd > 0 {
		m := make(map[int64]*dayCounts, nd)
		lastP := int64(0)
		for i := range nd {
			p := int64(binary.LittleEndian.Uint64(data))
			data = data[8:]
			if i > 0 && p <= lastP {
				return fmt.Errorf("%w: day chunks out of order", errHistory)
			}
			lastP = p
			c := new(dayCounts)
			for j := range c.n {
				c.n[j].Store(binary.LittleEndian.Uint64(data))
				data = data[8:]
			}
			m[p] = c
		}
		h.days.Store(&m)
	}
	return nil
}
