package redisstore

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/impressiond/impressiond/internal/redistest"
	"github.com/impressiond/impressiond/sketch"
)

// TestReachWindows: below sketch.ReachExact users reach is exact, in the
// windows sketch.Reach has (5-minute buckets, an hour of 13, a day of
// 289), duplicates included, a future event counted at its arrival, an
// event older than the day in the total only; at the ReachExact-th user
// it estimates, for good. Both modes, single and batched.
func TestReachWindows(t *testing.T) {
	for _, mode := range []string{"exact", "bloom"} {
		t.Run(mode, func(t *testing.T) {
			srv := redistest.Start(t)
			s := openTest(t, srv, mode, time.Hour)
			now := int64(29_000_000) // a minute on a bucket's first minute: 29,000,000 = 5·5,800,000
			item := func(u string, m int64) Item { return Item{"c", []byte(u), m, now, nil} }
			want := func(w sketch.ReachWindow) {
				t.Helper()
				got, err := s.Reach("c", now)
				if err != nil || got != w {
					t.Fatalf("Reach = %+v, %v; want %+v", got, err, w)
				}
			}
			want(sketch.ReachWindow{})
			track(t, s, item("a", now))
			track(t, s, item("a", now))                                          // a duplicate: the same user
			track(t, s, item("b", now-61), item("c", now-65), item("b", now-61)) // one bucket before the hour
			track(t, s, item("d", now-24*60), item("e", now-24*60-1))
			track(t, s, item("f", now+30)) // the future: at now
			want(sketch.ReachWindow{LastHour: 2, LastDay: 5, Total: 6})
			track(t, s, item("b", now)) // b seen again now: in the hour
			want(sketch.ReachWindow{LastHour: 3, LastDay: 5, Total: 6})

			var batch []Item
			for i := range sketch.ReachExact - 7 {
				batch = append(batch, item(fmt.Sprint("u", i), now))
			}
			track(t, s, batch...)
			want(sketch.ReachWindow{LastHour: sketch.ReachExact - 4, LastDay: sketch.ReachExact - 2, Total: sketch.ReachExact - 1})
			track(t, s, item("last", now))
			got, err := s.Reach("c", now)
			if err != nil || !got.Estimated || got.Total < 990 || got.Total > 1010 || got.LastHour > got.LastDay || got.LastDay > got.Total {
				t.Fatalf("at %d users Reach = %+v, %v; want estimates near 1000", sketch.ReachExact, got, err)
			}
			if keys := redisKeys(t, s, "imp:{c}:rx"); len(keys) != 0 {
				t.Fatalf("exact set kept after the switch: %v", keys)
			}
		})
	}
}

// TestReachErrorRedis measures the estimates against the truth at 10k and
// 100k users in one bucket (IMPRESSIOND_TEST_REACH_USERS=1000000,10000000
// adds those counts; a minute or two): within 3% (3.7 standard errors of
// Redis's 2¹⁴-register HyperLogLog, 0.81%). The user ids are fixed and
// Redis's hash is too, so the figures are the same on every run.
func TestReachErrorRedis(t *testing.T) {
	srv := redistest.Start(t)
	s := openTest(t, srv, "exact", time.Hour)
	now := int64(29_000_000)
	n := 0
	targets := []int{10_000, 100_000}
	for _, f := range strings.Split(os.Getenv("IMPRESSIOND_TEST_REACH_USERS"), ",") {
		if v, err := strconv.Atoi(f); err == nil && v > targets[len(targets)-1] {
			targets = append(targets, v)
		}
	}
	for _, target := range targets {
		for n < target {
			batch := make([]Item, 0, 1000)
			for range 1000 {
				batch = append(batch, Item{"c", fmt.Appendf(nil, "5f0e8c1a-%012d", n), now, now, nil})
				n++
			}
			track(t, s, batch...)
		}
		got, err := s.Reach("c", now)
		if err != nil {
			t.Fatal(err)
		}
		for name, v := range map[string]uint64{"total": got.Total, "last_day": got.LastDay, "last_hour": got.LastHour} {
			e := (float64(v) - float64(n)) / float64(n)
			t.Logf("%d users: %s %d (%+.2f%%)", n, name, v, 100*e)
			if math.Abs(e) > 0.03 {
				t.Errorf("%d users: %s %d, off by %.2f%%", n, name, v, 100*e)
			}
		}
	}
}
