package main

import (
	"testing"
	"time"
)

func TestTruthExpected(t *testing.T) {
	w := testWorkload(0, 30*time.Hour)
	tr := newTruth(w)
	// Deliver every item twice: distinct pairs count once.
	const n = 3000
	for j := uint64(0); j < n; j++ {
		tr.deliver(j)
		tr.deliver(j)
	}
	var want [3]windows
	now := wlStart.Add(5 * time.Minute)
	for j := uint64(0); j < n; j++ {
		c, u := w.pair(j)
		age := unixMinute(now) - unixMinute(w.eventTime(c, u))
		want[c].Total++
		if age < 1440 {
			want[c].LastDay++
		}
		if age < 60 {
			want[c].LastHour++
		}
	}
	var sum windows
	for c := range 3 {
		if got := tr.expected(c, now); got != want[c] {
			t.Fatalf("campaign %d: got %+v, want %+v", c, got, want[c])
		}
		if got := tr.distinct(c); got != n/3 {
			t.Fatalf("campaign %d: %d distinct, want %d", c, got, n/3)
		}
		sum.add(want[c])
	}
	// A 30h spread puts some pairs out of the day and most out of the hour.
	if sum.LastHour == 0 || sum.LastHour >= sum.LastDay || sum.LastDay >= sum.Total {
		t.Fatalf("windows not exercised: %+v", sum)
	}
}

func TestUnixMinute(t *testing.T) {
	for _, tc := range []struct {
		t    time.Time
		want int64
	}{
		{time.Unix(0, 0), 0},
		{time.Unix(119, 0), 1},
		{time.Unix(-1, 0), -1},
	} {
		if got := unixMinute(tc.t); got != tc.want {
			t.Errorf("unixMinute(%v) = %d, want %d", tc.t.Unix(), got, tc.want)
		}
	}
}
