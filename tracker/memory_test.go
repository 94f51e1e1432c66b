package tracker

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// BenchmarkCampaignMemory measures the heap a campaign costs in the
// in-process state, at 100 and 100,000 campaigns (docs/DESIGN.md, "Stats
// buckets"): created and idle, after its first counted impression (the
// minute ring is part of the campaign; the first impression adds the
// history's day chunks), and after its first duplicate (which allocates the
// duplicates' counter), and after a second user's impression with an ad
// id (one ad row; reach holds two users). The dedup window is not included: it is sized by
// its own options. Run with -benchtime 1x: each op is a whole fill.
//
//	go test -run '^$' -bench CampaignMemory -benchtime 1x ./tracker
func BenchmarkCampaignMemory(b *testing.B) {
	for _, n := range []int{100, 100000} {
		b.Run(fmt.Sprintf("campaigns=%d", n), func(b *testing.B) {
			for range b.N {
				clock := &fakeClock{t: suiteNow(b)}
				o := Options{Dedup: newDedup(b, "bloom", 0), Now: clock.Now, Logger: quiet, MaxCampaigns: n}
				tr, err := Open(o)
				if err != nil {
					b.Fatal(err)
				}
				heap := func() uint64 {
					runtime.GC()
					var m runtime.MemStats
					runtime.ReadMemStats(&m)
					return m.HeapAlloc
				}
				start := clock.Now().Add(-time.Hour)
				base := heap()
				ids := make([]string, n)
				for i := range ids {
					ids[i] = fmt.Sprintf("campaign-%06d", i)
					if _, err := tr.Create(CampaignSpec{ID: []byte(ids[i]), Name: []byte("Campaign " + ids[i]), Start: []byte(start.Format(time.RFC3339))}); err != nil {
						b.Fatal(err)
					}
				}
				created := heap()
				for _, id := range ids {
					if _, err := tr.Track(imp(id, "u")); err != nil {
						b.Fatal(err)
					}
				}
				tracked := heap()
				for _, id := range ids {
					if dup, err := tr.Track(imp(id, "u")); err != nil || !dup {
						b.Fatal(dup, err)
					}
				}
				duplicated := heap()
				for _, id := range ids {
					if _, err := tr.Track(&Impression{CampaignID: []byte(id), UserID: []byte("v"), AdID: []byte("ad-1")}); err != nil {
						b.Fatal(err)
					}
				}
				withAd := heap()
				per := func(a, b uint64) float64 { return float64(int64(b)-int64(a)) / float64(n) }
				b.ReportMetric(per(base, created), "B/campaign-idle")
				b.ReportMetric(per(base, tracked), "B/campaign-tracked")
				b.ReportMetric(per(base, duplicated), "B/campaign-with-duplicates")
				b.ReportMetric(per(base, withAd), "B/campaign-with-an-ad")
				tr.Close()
			}
		})
	}
}
