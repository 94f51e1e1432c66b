package tracker

import (
	"time"

	"github.com/impressiond/impressiond/stats"
	"github.com/impressiond/impressiond/store/redisstore"
)

// ads reads the per-ad counts Redis keeps (redisstore.Store.Ads), then the
// campaign's counts: read in that order, None is never negative, as in
// process.
func (s *shared) ads(c *Campaign, now int64) (AdStats, error) {
	rows, other, err := s.remote.Ads(refOf(c), now, stats.DayMinutes)
	if err != nil {
		return AdStats{}, s.errRedis(err)
	}
	counted, err := s.window(c, now)
	if err != nil {
		return AdStats{}, err
	}
	out := AdStats{Ads: make([]AdCount, 0, len(rows)), Other: adWindow(other)}
	sum := out.Other
	for id, r := range rows {
		w := adWindow(r)
		out.Ads = append(out.Ads, AdCount{AdID: id, Window: w})
		sum.LastHour += w.LastHour
		sum.LastDay += w.LastDay
		sum.Total += w.Total
	}
	out.None = noneOf(counted.Window, sum)
	sortAds(out.Ads)
	return out, nil
}

func adWindow(w redisstore.AdWindow) stats.Window {
	return stats.Window{LastHour: w.LastHour, LastDay: w.LastDay, Total: w.Total}
}

func (s *shared) frequency(items []frequencyItem, user []byte, now time.Time, out []FrequencyResult) error {
	return newError(Unsupported, "frequency caps are not kept in a shared Redis yet")
}
