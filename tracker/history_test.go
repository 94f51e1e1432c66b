package tracker

import (
	"strings"
	"testing"
	"time"

	"github.com/impressiond/impressiond/stats"
)

// Unit tests of History: minute, hourly and daily points, what each step
// keeps, and that hours and days survive restarts.

func TestHistorySteps(t *testing.T) {
	clock := &fakeClock{t: suiteNow(t)}
	tr := openTracker(t, clock, nil)
	now := clock.Now()
	create(t, tr, "h", now.Add(-400*24*time.Hour))
	ago := []time.Duration{0, 10 * time.Minute, 2 * time.Hour, 30 * time.Hour, 20 * 24 * time.Hour, 100 * 24 * time.Hour, 300 * 24 * time.Hour}
	for i, a := range ago {
		if _, err := tr.Track(stamped("h", string(rune('a'+i)), now.Add(-a))); err != nil {
			t.Fatal(err)
		}
	}
	sum := func(ps []Point) (n uint64) {
		for _, p := range ps {
			n += p.Count
		}
		return n
	}
	// Minutes: the last 24 hours.
	_, ps, err := tr.History("h", time.Minute, now.Add(-MinuteKept+time.Minute), now)
	if err != nil || len(ps) != stats.Minutes || sum(ps) != 3 || ps[len(ps)-1].Count != 1 {
		t.Fatalf("a day of minutes: %d points summing to %d, %v", len(ps), sum(ps), err)
	}
	if !ps[len(ps)-1].Start.Equal(now.Truncate(time.Minute)) || ps[0].Start.Location() != time.UTC {
		t.Fatalf("last minute point starts at %v, want %v (UTC)", ps[len(ps)-1].Start, now.Truncate(time.Minute))
	}
	if _, _, err := tr.History("h", time.Minute, now.Add(-MinuteKept), now); err == nil || !strings.Contains(err.Error(), "minute points are kept for 24 hours") {
		t.Fatalf("a minute range older than a day: %v", err)
	}
	// Hours: the last 90 days, calendar days (UTC) aligned.
	_, ps, err = tr.History("h", time.Hour, now.Add(-7*24*time.Hour), now)
	if err != nil || len(ps) != 7*24+1 || sum(ps) != 4 {
		t.Fatalf("a week of hours: %d points summing to %d, %v; want 169 summing to 4", len(ps), sum(ps), err)
	}
	dayStart := now.Truncate(24 * time.Hour)
	oldestHour := dayStart.Add(-(stats.HistoryDays - 1) * 24 * time.Hour)
	if _, ps, err = tr.History("h", time.Hour, oldestHour, now); err != nil || sum(ps) != 5 {
		t.Fatalf("every kept hour: %d, %v; want 5", sum(ps), err)
	}
	_, _, err = tr.History("h", time.Hour, oldestHour.Add(-time.Nanosecond), now)
	if err == nil || !strings.Contains(err.Error(), "hourly points are kept for 90 days: from must be at or after "+oldestHour.Format(time.RFC3339)) {
		t.Fatalf("an hour range older than 90 days: %v", err)
	}
	// Days: for life.
	_, ps, err = tr.History("h", 24*time.Hour, now.Add(-400*24*time.Hour), now.Add(time.Hour))
	if err != nil || len(ps) != 401 || sum(ps) != 7 || !ps[len(ps)-1].Start.Equal(dayStart) {
		t.Fatalf("400 days: %d points summing to %d, %v", len(ps), sum(ps), err)
	}
	for _, tc := range []struct {
		step     time.Duration
		from, to time.Time
		want     error
	}{
		{time.Second, now, now, ErrStep},
		{time.Hour, now, now.Add(-time.Hour), ErrRangeFrom},
		{24 * time.Hour, now.Add(-MaxPoints * 24 * time.Hour), now, ErrRangeSize},
	} {
		if _, _, err := tr.History("h", tc.step, tc.from, tc.to); err != tc.want {
			t.Errorf("History(%v, %v, %v) = %v, want %v", tc.step, tc.from, tc.to, err, tc.want)
		}
	}
	if _, ps, err := tr.History("h", 24*time.Hour, now.Add(-(MaxPoints-1)*24*time.Hour), now); err != nil || len(ps) != MaxPoints {
		t.Fatalf("MaxPoints days: %d, %v", len(ps), err)
	}
	if _, _, err := tr.History("none", time.Hour, now, now); err != ErrCampaignNotFound {
		t.Fatalf("unknown campaign: %v", err)
	}
}

func TestHistorySurvivesRestart(t *testing.T) {
	for _, snapshot := range []bool{false, true} {
		clock := &fakeClock{t: suiteNow(t)}
		dir := t.TempDir()
		tr := openDir(t, "exact", dir, clock, nil)
		now := clock.Now()
		create(t, tr, "h", now.Add(-200*24*time.Hour))
		for i, a := range []time.Duration{0, 3 * time.Hour, 50 * 24 * time.Hour, 150 * 24 * time.Hour} {
			if _, err := tr.Track(stamped("h", string(rune('a'+i)), now.Add(-a))); err != nil {
				t.Fatal(err)
			}
		}
		stop := tr.Close
		if snapshot {
			stop = tr.Shutdown
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		b := openDir(t, "exact", dir, clock, nil)
		_, hours, err := b.History("h", time.Hour, now.Add(-60*24*time.Hour), now)
		if err != nil {
			t.Fatal(err)
		}
		_, days, _ := b.History("h", 24*time.Hour, now.Add(-200*24*time.Hour), now)
		var nh, nd uint64
		for _, p := range hours {
			nh += p.Count
		}
		for _, p := range days {
			nd += p.Count
		}
		if nh != 3 || nd != 4 {
			t.Fatalf("snapshot %v: after the restart %d in the hours, %d in the days; want 3 and 4", snapshot, nh, nd)
		}
	}
}
