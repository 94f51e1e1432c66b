package tracker

import (
	"errors"
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

// frequency reads the exposures of user's pair with every item's
// campaign in Redis, in one round trip per Redis node, on Redis's clock
// (not now: the one the track scripts record exposures by, so a check
// sees every impression tracked before it on any instance). Each item is
// read at the version this instance has of its campaign; one that changed
// meanwhile (another instance's SetFrequencyCaps or Update) is answered
// by its campaign as it is now, read again, with its caps; one deleted
// meanwhile gets ErrCampaignNotFound.
func (s *shared) frequency(items []frequencyItem, user []byte, _ time.Time, out []FrequencyResult) error {
	for try := 1; len(items) > 0; try++ {
		qs := make([]redisstore.FrequencyQuery, len(items))
		counts := make([][]uint64, len(items))
		for k, it := range items {
			e := out[it.index].Exposures
			ws := make([]time.Duration, len(e))
			for j := range e {
				ws[j] = e[j].Window
			}
			qs[k] = redisstore.FrequencyQuery{Campaign: refOf(it.c), Windows: ws}
			counts[k] = make([]uint64, len(ws))
		}
		err := s.remote.Frequency(user, qs, counts)
		var stale *redisstore.StaleError
		if err != nil && !errors.As(err, &stale) {
			return s.errRedis(err)
		}
		refused := map[string]bool{}
		if stale != nil {
			for _, r := range stale.Refs {
				refused[r] = true
			}
		}
		var again []frequencyItem
		now := map[string]*Campaign{} // the refused campaigns as they are now
		nowErr := map[string]error{}
		for k, it := range items {
			r := &out[it.index]
			ref := qs[k].Campaign
			if !refused[ref] {
				for j := range r.Exposures {
					r.Exposures[j].Count = counts[k][j]
				}
				continue
			}
			n, seen := now[ref]
			if !seen {
				n, nowErr[ref] = s.rejudge(it.c, time.Time{})
				now[ref] = n
			}
			err := nowErr[ref]
			if err == nil && try >= maxStaleTries {
				err = ErrCampaignNotFound // changing faster than it can be read, or being deleted
			}
			switch {
			case err == ErrCampaignNotFound:
				*r = FrequencyResult{CampaignID: r.CampaignID, Err: err}
				continue
			case err != nil:
				return err
			}
			r.Exposures = exposuresOf(n.Caps)
			if len(n.Caps) > 0 {
				again = append(again, frequencyItem{c: n, index: it.index})
			}
		}
		items = again
	}
	return nil
}

// exposuresOf returns the exposures of caps with no count yet: [] for
// none, as Frequency answers an uncapped campaign.
func exposuresOf(caps []FrequencyCap) []Exposure {
	e := make([]Exposure, len(caps))
	for j, cp := range caps {
		e[j] = Exposure{Window: cp.Window, Max: cp.Max}
	}
	return e
}
