package tracker

import (
	"fmt"
	"math"
	"time"

	"github.com/impressiond/impressiond/stats"
)

// How long each resolution of a campaign's counts is kept: minute points
// for a day (the stats.Counter ring), hourly points for stats.HistoryDays
// days, daily points for the campaign's life.
const (
	MinuteKept = stats.Minutes * time.Minute
	HourKept   = stats.HistoryDays * 24 * time.Hour
	// MaxPoints bounds the points of one History read.
	MaxPoints = 10000
)

// The errors of a History read that asks for what is not kept.
var (
	ErrStep      = newError(Invalid, "step must be 1m, 1h or 1d")
	ErrRangeFrom = newError(Invalid, "from must not be after to")
	ErrRangeSize = newError(Invalid, fmt.Sprintf("a range holds at most %d points: narrow it or take a longer step", MaxPoints))
)

// notKept says what a step keeps, for a range that starts before it.
func notKept(step time.Duration, oldest time.Time) *Error {
	what := map[time.Duration]string{time.Minute: "minute points are kept for 24 hours", time.Hour: "hourly points are kept for 90 days"}[step]
	return newError(Invalid, fmt.Sprintf("%s: from must be at or after %s (or take a longer step)", what, oldest.UTC().Format(time.RFC3339)))
}

// Point is one count of a History read: the impressions counted whose
// event time is in [Start, Start + step).
type Point struct {
	Start time.Time
	Count uint64
}

// History returns the campaign with the given id and its counts per step
// (time.Minute, time.Hour or 24 hours) from the step holding from to the
// step holding to, oldest first, steps without impressions as zeros. to
// after the current time reads up to the current step. A range reaching
// before what the step keeps (MinuteKept, HourKept; days are kept for
// good) is refused with an error saying from when it is kept, as is one
// of more than MaxPoints points.
func (t *Tracker) History(id string, step time.Duration, from, to time.Time) (Campaign, []Point, error) {
	c, err := t.campaign(id)
	if err != nil {
		return Campaign{}, nil, err
	}
	now := t.now()
	if to.After(now) {
		to = now
	}
	if from.After(to) {
		return Campaign{}, nil, ErrRangeFrom
	}
	nowMin := stats.Minute(now)
	var first, last, oldest int64 // in units of step
	switch step {
	case time.Minute:
		first, last, oldest = stats.Minute(from), stats.Minute(to), nowMin-stats.Minutes+1
	case time.Hour:
		first, last = stats.HourOf(stats.Minute(from)), stats.HourOf(stats.Minute(to))
		oldest = (stats.DayOf(nowMin) - stats.HistoryDays + 1) * 24
	case 24 * time.Hour:
		first, last = stats.DayOf(stats.Minute(from)), stats.DayOf(stats.Minute(to))
		oldest = math.MinInt64 // days are kept for good
	default:
		return Campaign{}, nil, ErrStep
	}
	if first < oldest {
		return Campaign{}, nil, notKept(step, time.Unix(oldest*int64(step/time.Second), 0))
	}
	if last-first+1 > MaxPoints {
		return Campaign{}, nil, ErrRangeSize
	}
	counts := make([]uint64, last-first+1)
	if err := t.st.history(c, step, first, counts); err != nil {
		return Campaign{}, nil, err
	}
	out := make([]Point, len(counts))
	for i, n := range counts {
		out[i] = Point{Start: time.Unix((first+int64(i))*int64(step/time.Second), 0).UTC(), Count: n}
	}
	return *c, out, nil
}
