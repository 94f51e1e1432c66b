package tracker

import (
	"bytes"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/impressiond/impressiond/internal/redistest"
	"github.com/impressiond/impressiond/stats"
	"github.com/impressiond/impressiond/store/redisstore"
)

// TestWindowOfHourBoundary: of the day of minutes Redis returns (oldest
// first), the last 60 are the last hour, the 61st from the end is not,
// and the total never falls below the day's sum.
func TestWindowOfHourBoundary(t *testing.T) {
	mins := make([]uint64, stats.DayMinutes)
	mins[0] = 1                              // the oldest minute of the day
	mins[len(mins)-stats.HourMinutes-1] = 10 // 60 minutes before the current one
	mins[len(mins)-stats.HourMinutes] = 100  // the oldest minute of the hour
	mins[len(mins)-1] = 1000                 // the current minute
	w := windowOf(mins, 5)
	want := stats.Window{LastHour: 1100, LastDay: 1111, Total: 1111}
	if w != want {
		t.Fatalf("windowOf = %+v, want %+v", w, want)
	}
	if w := windowOf(mins, 5000); w.Total != 5000 || w.LastDay != 1111 || w.LastHour != 1100 {
		t.Fatalf("windowOf with a larger total = %+v, want total 5000", w)
	}
}

// TestLogLimiterPacesLines: one line per redisLogEvery, the first at once,
// the next exactly redisLogEvery later, each standing for every event
// since the last line.
func TestLogLimiterPacesLines(t *testing.T) {
	var l logLimiter
	t0 := time.Unix(1_700_000_000, 0)
	for i, c := range []struct {
		at   time.Duration
		n    uint64
		logs bool
	}{
		{0, 1, true},
		{time.Millisecond, 0, false},
		{redisLogEvery - 1, 0, false},
		{redisLogEvery, 3, true}, // the two held back and this one
		{redisLogEvery + 1, 0, false},
		{2*redisLogEvery - 1, 0, false},
		{5 * redisLogEvery, 3, true},
	} {
		n, ok := l.allow(t0.Add(c.at))
		if n != c.n || ok != c.logs {
			t.Fatalf("event %d at +%v: allow = %d, %v; want %d, %v", i, c.at, n, ok, c.n, c.logs)
		}
	}
}

// TestErrRedisLogsPaced: a failing Redis call answers ErrSharedUnavailable
// and logs its cause at most once a second, with the failures the line
// stands for.
func TestErrRedisLogsPaced(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	var buf bytes.Buffer
	s := &shared{now: clock.Now, log: slog.New(slog.NewTextHandler(&buf, nil))}
	cause := errors.New("dial tcp 10.0.0.7:6379: connection refused")
	for range 3 {
		if err := s.errRedis(cause); err != ErrSharedUnavailable {
			t.Fatalf("errRedis = %v, want ErrSharedUnavailable", err)
		}
	}
	clock.Add(redisLogEvery)
	s.errRedis(cause)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("4 failures over one second logged %d lines, want 2:\n%s", len(lines), buf.String())
	}
	for i, want := range []string{"failures=1", "failures=3"} {
		if !strings.Contains(lines[i], want) || !strings.Contains(lines[i], "connection refused") {
			t.Errorf("line %d %q: want the cause and %s", i, lines[i], want)
		}
	}
}

// TestSharedClockOffsetMetric: impressiond_redis_clock_offset_seconds is
// this instance's clock minus Redis's. The instance clock is set an hour
// behind Redis's,
// so the offset is -3600 s within the time the test takes, whatever the
// date. (The offset is measured against Redis's TIME, the one clock here
// that is real.)
func TestSharedClockOffsetMetric(t *testing.T) {
	srv := redistest.Start(t)
	clock := &fakeClock{t: time.Now().Add(-time.Hour)}
	r, err := redisstore.Open(redisstore.Options{URL: srv.URL, Mode: "exact", Timeout: 5 * time.Second, Now: clock.Now, Dedup: suiteDedup})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	s := newShared(r, clock.Now, quiet)
	var b strings.Builder
	s.writeMetrics(&b, func(string, string, string) {})
	var got float64
	for line := range strings.SplitSeq(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, "impressiond_redis_clock_offset_seconds "); ok {
			if got, err = strconv.ParseFloat(v, 64); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := -time.Hour.Seconds()
	if got < want-60 || got > want+60 {
		t.Fatalf("clock offset metric %v s, want %v s ± 60 (instance clock an hour behind Redis's):\n%s", got, want, b.String())
	}
}
