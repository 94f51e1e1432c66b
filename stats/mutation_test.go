package stats

import "testing"

// TestRingEdges pins the edges of the ring and of the minute range a
// Counter can tag: the oldest minute still in the ring, the first one out
// of it, Unix minute 0 and the largest taggable minute.
func TestRingEdges(t *testing.T) {
	for _, tc := range []struct {
		name   string
		m, now int64
		want   uint64 // At(m) after one Add(m, now)
	}{
		// The ring holds now-Minutes+1 … now.
		{"oldest minute in the ring", base - Minutes + 1, base, 1},
		// One minute older has left the ring: it counts in Total only.
		{"first minute out of the ring", base - Minutes, base, 0},
		// The Unix epoch's minute is a minute like any other.
		{"minute 0", 0, 0, 1},
		{"minute 0 seen later", 0, 10, 1},
		// The largest minute whose tag m+minuteBias fits in 32 bits.
		{"largest taggable minute", countMask - minuteBias, countMask - minuteBias, 1},
		{"first untaggable minute", countMask, countMask, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Counter
			c.Add(tc.m, tc.now)
			if got := c.At(tc.m); got != tc.want {
				t.Errorf("At(%d): got %d, want %d", tc.m, got, tc.want)
			}
			if got := c.Total(); got != 1 {
				t.Errorf("Total: got %d, want 1", got)
			}
		})
	}
}

// TestOutOfRingAddKeepsCurrentMinute: an impression a whole ring older than
// now shares now's ring slot; it must neither count in now's minute nor
// disturb what that minute holds.
func TestOutOfRingAddKeepsCurrentMinute(t *testing.T) {
	var c Counter
	c.Add(base-Minutes, base) // out of the ring, before now's minute is claimed
	c.Add(base, base)
	c.Add(base-Minutes, base) // and after
	if got := c.At(base); got != 1 {
		t.Errorf("At(now): got %d, want 1", got)
	}
	if got, want := c.Read(base), (Window{LastHour: 1, LastDay: 1, Total: 3}); got != want {
		t.Errorf("Read(now): got %+v, want %+v", got, want)
	}
}

// TestUntaggableMinuteLeavesNoBucket: a minute too large to tag counts in
// Total only and leaves the ring untouched, so the counter's binary form
// still reads back, with no count in any minute.
func TestUntaggableMinuteLeavesNoBucket(t *testing.T) {
	for _, m := range []int64{countMask, countMask + 1, countMask + 2} {
		var c Counter
		c.Add(m, m)
		b, _ := c.AppendBinary(nil)
		if want := binaryHeaderLen; len(b) != want {
			t.Errorf("minute %d: binary form of %d bytes, want %d (no bucket)", m, len(b), want)
		}
		var r Counter
		if err := r.UnmarshalBinary(b); err != nil {
			t.Fatalf("minute %d: UnmarshalBinary: %v", m, err)
		}
		if got, want := r.Read(0), (Window{Total: 1}); got != want {
			t.Errorf("minute %d: Read(0) after a round trip: got %+v, want %+v", m, got, want)
		}
	}
}
