package stats

import (
	"strings"
	"sync"
	"testing"
)

// A fixed Unix minute, a day boundary: no test reads the wall clock.
const histNow = int64(29_000_000 / 1440 * 1440) // 2025-02-18T00:00Z-ish, a whole day

func TestHistoryHoursAndDays(t *testing.T) {
	var h History
	now := histNow + 90 // 01:30 of day D
	for _, m := range []int64{now, now - 1, now - 31, now - 91, now - 24*60, now - 89*1440, now - 90*1440} {
		h.Add(m, now)
	}
	h.Add(now+5, now) // a minute ahead counts at now
	D := DayOf(now)
	for _, c := range []struct {
		hour int64
		want uint64
	}{
		{HourOf(now), 3},           // now, now-1 (01:00..01:59) and the future one
		{HourOf(now - 31), 1},      // 00:59
		{HourOf(now - 91), 1},      // 23:59 of the day before
		{HourOf(now - 24*60), 1},   // a day before
		{HourOf(now - 89*1440), 1}, // the oldest day of the ring
		{HourOf(now - 90*1440), 0}, // out of the ring: days only
		{HourOf(now) + 1, 0},
	} {
		if got := h.Hour(c.hour); got != c.want {
			t.Errorf("hour %d: %d, want %d", c.hour-HourOf(now), got, c.want)
		}
	}
	for _, c := range []struct {
		day  int64
		want uint64
	}{{D, 4}, {D - 1, 2}, {D - 89, 1}, {D - 90, 1}, {D - 2, 0}, {D + 1, 0}} {
		if got := h.Day(c.day); got != c.want {
			t.Errorf("day %d: %d, want %d", c.day-D, got, c.want)
		}
	}
	if first, ok := h.FirstDay(); !ok || first != D-90 {
		t.Errorf("first day %d, %v; want %d", first-D, ok, -90)
	}
	// An impression older than the ring does not take a live day's slot.
	h.Add(now-180*1440, now)
	if got := h.Hour(HourOf(now)); got != 3 {
		t.Fatalf("an old impression disturbed today's hours: %d", got)
	}
	if got := h.Day(D - 180); got != 1 {
		t.Fatalf("day -180: %d, want 1", got)
	}
	// A new day reclaims the slot of the day 90 days before it.
	h.Add(now+90*1440, now+90*1440)
	if h.Hour(HourOf(now)) != 0 || h.Hour(HourOf(now+90*1440)) != 1 {
		t.Fatal("the ring did not move on")
	}
	if h.Day(D) != 4 {
		t.Fatal("a day's count left with its hours")
	}
}

func TestHistoryBeforeEpoch(t *testing.T) {
	var h History
	m := int64(-1) // 1969-12-31T23:59Z
	h.Add(m, m)
	if DayOf(m) != -1 || HourOf(m) != -1 {
		t.Fatalf("DayOf/HourOf(-1) = %d, %d", DayOf(m), HourOf(m))
	}
	if h.Hour(-1) != 1 || h.Day(-1) != 1 || h.Day(0) != 0 || h.Hour(0) != 0 {
		t.Fatal("an impression before 1970 in the wrong hour or day")
	}
	h.Add(-64*1440, m)
	if h.Day(-64) != 1 {
		t.Fatal("day -64, the first of its period, not counted")
	}
}

func TestHistoryConcurrent(t *testing.T) {
	var h History
	var wg sync.WaitGroup
	const workers, each = 8, 2000
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				// Spread over 200 days, so periods and slots are created
				// concurrently.
				h.Add(histNow-int64((i*7+w)%200)*1440, histNow)
			}
		}()
	}
	wg.Wait()
	var sum uint64
	for d := DayOf(histNow) - 200; d <= DayOf(histNow); d++ {
		sum += h.Day(d)
	}
	if sum != workers*each {
		t.Fatalf("days sum to %d, want %d", sum, workers*each)
	}
}

func TestHistoryBinary(t *testing.T) {
	var h History
	for i := range 500 {
		h.Add(histNow-int64(i)*397, histNow) // hours and days spread over 137 days
	}
	b, err := h.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	var g History
	if err := g.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	for hr := HourOf(histNow) - HistoryDays*24; hr <= HourOf(histNow); hr++ {
		if g.Hour(hr) != h.Hour(hr) {
			t.Fatalf("hour %d: %d, want %d", hr, g.Hour(hr), h.Hour(hr))
		}
	}
	for d := DayOf(histNow) - 200; d <= DayOf(histNow); d++ {
		if g.Day(d) != h.Day(d) {
			t.Fatalf("day %d: %d, want %d", d, g.Day(d), h.Day(d))
		}
	}
	again, _ := g.AppendBinary(nil)
	if string(again) != string(b) {
		t.Fatal("the encoding did not round-trip byte for byte")
	}
	var empty History
	e, _ := empty.AppendBinary(nil)
	if len(e) != 8 {
		t.Fatalf("an empty history encodes as %d bytes, want 8", len(e))
	}
	if err := g.UnmarshalBinary(e); err != nil || g.Day(DayOf(histNow)) != 0 {
		t.Fatalf("decoding the empty state: %v", err)
	}
	for name, bad := range map[string][]byte{
		"short":    {1, 0},
		"trailing": append(append([]byte{}, e...), 0),
		"too many": append([]byte{HistoryDays + 1, 0, 0, 0}, make([]byte, 4)...),
		"cut":      b[:len(b)-1],
	} {
		if err := g.UnmarshalBinary(bad); err == nil || !strings.Contains(err.Error(), "malformed history") {
			t.Errorf("%s: %v, want malformed", name, err)
		}
	}
	// Chunks out of order or in one slot.
	var two History
	two.Add(histNow, histNow)
	two.Add(histNow-1440, histNow)
	tb, _ := two.AppendBinary(nil)
	swapped := append([]byte{}, tb[:4]...)
	swapped = append(swapped, tb[4+200:4+400]...)
	swapped = append(swapped, tb[4:4+200]...)
	swapped = append(swapped, tb[4+400:]...)
	if err := g.UnmarshalBinary(swapped); err == nil || !strings.Contains(err.Error(), "out of order") {
		t.Errorf("swapped hour chunks: %v", err)
	}
	// The second chunk (day D) moved to D+89: after D-1, in D-1's slot.
	sameSlot := append([]byte{}, tb...)
	putDay(sameSlot[4+200:], DayOf(histNow)+HistoryDays-1)
	if err := g.UnmarshalBinary(sameSlot); err == nil || !strings.Contains(err.Error(), "one slot") {
		t.Errorf("two chunks in one slot: %v", err)
	}
}

func putDay(b []byte, d int64) {
	for i := range 8 {
		b[i] = byte(uint64(d) >> (8 * i))
	}
}

func TestHistoryBytes(t *testing.T) {
	var h History
	base := h.Bytes()
	h.Add(histNow, histNow)
	if got := h.Bytes() - base; got != 8+24*8+8+8+dayChunk*8 {
		t.Fatalf("one impression grew the history by %d bytes", got)
	}
	for i := range 24 * 60 {
		h.Add(histNow+int64(i), histNow+int64(i)) // the rest of the day: no new chunk
	}
	if got := h.Bytes() - base; got != 8+24*8+8+8+dayChunk*8 {
		t.Fatalf("a day of impressions grew the history by %d bytes", got)
	}
}
