package tracker

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/impressiond/impressiond/sketch"
	"github.com/impressiond/impressiond/stats"
)

// DefaultMaxAdsPerCampaign is Options.MaxAdsPerCampaign's default.
const DefaultMaxAdsPerCampaign = 1000

// lazyReach is a sketch.Reach allocated by its first Add: a campaign
// without impressions costs a pointer for it. It is safe for concurrent
// use.
type lazyReach struct{ p atomic.Pointer[sketch.Reach] }

func (l *lazyReach) reach() *sketch.Reach {
	if r := l.p.Load(); r != nil {
		return r
	}
	l.p.CompareAndSwap(nil, new(sketch.Reach))
	return l.p.Load()
}

// Read reads the windows ending with now, all zero before the first Add.
func (l *lazyReach) Read(now time.Time) sketch.ReachWindow {
	if r := l.p.Load(); r != nil {
		return r.Read(now)
	}
	return sketch.ReachWindow{}
}

// adTable counts a campaign's counted impressions by ad id: at most max
// ids get a row, in the order they first appear; impressions of later new
// ids go to other. Impressions without an ad id are not counted here: they
// are the campaign's count less the rows and other (AdStats.None), which
// keeps the single-impression path without an ad id as cheap as before.
// It is safe for concurrent use.
type adTable struct {
	mu    sync.RWMutex
	rows  map[string]*adRow
	other lazyCounter
}

type adRow struct {
	id string
	n  stats.Counter
}

// add counts one impression of ad (non-empty) at event minute m,
// observed at minute now. Callers count it in the campaign's counter
// first: AdStats reads the rows before the campaign's counter, so the
// rows never add up to more than it.
func (t *adTable) add(ad []byte, m, now int64, max int) {
	t.mu.RLock()
	r := t.rows[string(ad)]
	t.mu.RUnlock()
	if r == nil {
		if r = t.row(ad, max); r == nil {
			t.other.Add(m, now)
			return
		}
	}
	r.n.Add(m, now)
}

// row returns ad's row, creating it when fewer than max rows exist; nil
// when the table is full.
func (t *adTable) row(ad []byte, max int) *adRow {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r := t.rows[string(ad)]; r != nil {
		return r
	}
	if len(t.rows) >= max {
		return nil
	}
	if t.rows == nil {
		t.rows = make(map[string]*adRow)
	}
	r := &adRow{id: string(ad)}
	t.rows[r.id] = r
	return r
}

// AdCount is one ad's counted impressions.
type AdCount struct {
	AdID string
	stats.Window
}

// AdStats are a campaign's counted impressions by ad id, in the windows
// ending with one minute: Ads ordered by Total, most first (ties by id),
// Other for the ids beyond Options.MaxAdsPerCampaign, None for the
// impressions without an ad id. Each window of the Ads, Other and None
// adds up to the campaign's Stats.
type AdStats struct {
	Ads         []AdCount
	Other, None stats.Window
}

// read reads the table in the windows ending with minute now; counted is
// read after it, so that None is never negative.
func (t *adTable) read(now int64, counted func() stats.Window) AdStats {
	t.mu.RLock()
	rows := make([]*adRow, 0, len(t.rows))
	for _, r := range t.rows {
		rows = append(rows, r)
	}
	t.mu.RUnlock()
	var s AdStats
	s.Ads = make([]AdCount, len(rows))
	sum := t.other.Read(now)
	s.Other = sum
	for i, r := range rows {
		w := r.n.Read(now)
		s.Ads[i] = AdCount{AdID: r.id, Window: w}
		sum.LastHour += w.LastHour
		sum.LastDay += w.LastDay
		sum.Total += w.Total
	}
	s.None = noneOf(counted(), sum)
	sortAds(s.Ads)
	return s
}

// noneOf is the counted impressions of all without an ad id: all less the
// rows and other, sum.
func noneOf(all, sum stats.Window) stats.Window {
	return stats.Window{
		LastHour: all.LastHour - min(all.LastHour, sum.LastHour),
		LastDay:  all.LastDay - min(all.LastDay, sum.LastDay),
		Total:    all.Total - min(all.Total, sum.Total),
	}
}

func sortAds(ads []AdCount) {
	slices.SortFunc(ads, func(a, b AdCount) int {
		if c := cmp.Compare(b.Total, a.Total); c != 0 {
			return c
		}
		return cmp.Compare(a.AdID, b.AdID)
	})
}

// Ads returns the campaign with the given id and its counted impressions
// by ad id in the windows ending with the current minute.
func (t *Tracker) Ads(id string) (Campaign, AdStats, error) {
	c, err := t.campaign(id)
	if err != nil {
		return Campaign{}, AdStats{}, err
	}
	s, err := t.st.ads(c, stats.Minute(t.now()))
	if err != nil {
		return Campaign{}, AdStats{}, err
	}
	return *c, s, nil
}

// Window is one reading of a campaign's figures: the last hour, the last
// day and the total.
type Window = stats.Window
