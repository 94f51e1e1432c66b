package tracker

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/impressiond/impressiond/sketch"
	"github.com/impressiond/impressiond/stats"
)

func adImp(campaign, user, ad string, ts time.Time) *Impression {
	i := stamped(campaign, user, ts)
	if ad != "" {
		i.AdID = []byte(ad)
	}
	return i
}

// analyticsFill tracks, in campaign c: a1 ×3 users, a2 ×2 (one a
// duplicate, which no ad counts), a3 (beyond max 2 ads: other), two
// without an ad, one of them an hour and a half old.
func analyticsFill(t *testing.T, tr *Tracker, now time.Time) {
	t.Helper()
	for _, it := range []struct {
		user, ad string
		at       time.Time
		dup      bool
	}{
		{"u1", "a1", now, false},
		{"u2", "a1", now, false},
		{"u3", "a2", now, false},
		{"u3", "a2", now, true},
		{"u4", "a3", now, false},
		{"u5", "a1", now.Add(-2 * time.Hour), false},
		{"u6", "", now, false},
		{"u7", "", now.Add(-90 * time.Minute), false},
		{"u8", "a2", now.Add(-25 * time.Hour), false},
	} {
		dup, err := tr.Track(adImp("c", it.user, it.ad, it.at))
		if err != nil || dup != it.dup {
			t.Fatalf("%s/%s: dup %v, %v; want dup %v", it.user, it.ad, dup, err, it.dup)
		}
	}
}

func wantAds() AdStats {
	return AdStats{
		Ads: []AdCount{
			{AdID: "a1", Window: stats.Window{LastHour: 2, LastDay: 3, Total: 3}},
			{AdID: "a2", Window: stats.Window{LastHour: 1, LastDay: 1, Total: 2}},
		},
		Other: stats.Window{LastHour: 1, LastDay: 1, Total: 1},
		None:  stats.Window{LastHour: 1, LastDay: 2, Total: 2},
	}
}

// TestAdsAddUp: rows by total, the ids beyond the cap in other, the
// impressions without an ad in none; each window adds up to the stats.
func TestAdsAddUp(t *testing.T) {
	for _, mode := range []string{"bloom", "exact"} {
		t.Run(mode, func(t *testing.T) {
			clock := &fakeClock{t: suiteNow(t)}
			tr := openTracker(t, clock, func(o *Options) { o.Dedup, o.MaxAdsPerCampaign, o.MaxSkew = newDedup(t, mode, 0), 2, time.Minute })
			now := clock.Now()
			create(t, tr, "c", now.Add(-72*time.Hour))
			analyticsFill(t, tr, now)
			_, got, err := tr.Ads("c")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, wantAds()) {
				t.Fatalf("Ads = %+v,\nwant %+v", got, wantAds())
			}
			_, st, _ := tr.Stats("c")
			sum := got.Other
			for _, w := range append([]AdCount{{Window: got.None}}, got.Ads...) {
				sum.LastHour, sum.LastDay, sum.Total = sum.LastHour+w.LastHour, sum.LastDay+w.LastDay, sum.Total+w.Total
			}
			if sum != st.Window {
				t.Fatalf("ads add up to %+v, stats %+v", sum, st.Window)
			}
			if _, _, err := tr.Ads("nope"); err != ErrCampaignNotFound {
				t.Fatalf("Ads(nope) = %v", err)
			}
		})
	}
}

// TestAdsOrderTies: equal totals sort by id; the default cap is 1000.
func TestAdsOrderTies(t *testing.T) {
	clock := &fakeClock{t: suiteNow(t)}
	tr := openTracker(t, clock, nil)
	now := clock.Now()
	create(t, tr, "c", now.Add(-time.Hour))
	for i := range DefaultMaxAdsPerCampaign + 1 {
		if _, err := tr.Track(adImp("c", fmt.Sprint("u", i), fmt.Sprintf("ad%04d", DefaultMaxAdsPerCampaign-i), now)); err != nil {
			t.Fatal(err)
		}
	}
	_, got, _ := tr.Ads("c")
	if len(got.Ads) != DefaultMaxAdsPerCampaign || got.Other.Total != 1 {
		t.Fatalf("%d rows, other %d; want %d and 1", len(got.Ads), got.Other.Total, DefaultMaxAdsPerCampaign)
	}
	if got.Ads[0].AdID != "ad0001" || got.Ads[len(got.Ads)-1].AdID != "ad1000" {
		t.Fatalf("rows from %s to %s, want ad0001 to ad1000 (ties by id)", got.Ads[0].AdID, got.Ads[len(got.Ads)-1].AdID)
	}
}

// TestReachCountsDuplicates: reach is distinct users, counted or not,
// exact below 1,000 users.
func TestReachCountsDuplicates(t *testing.T) {
	clock := &fakeClock{t: suiteNow(t)}
	tr := openTracker(t, clock, func(o *Options) { o.MaxSkew = time.Minute })
	now := clock.Now()
	create(t, tr, "c", now.Add(-72*time.Hour))
	analyticsFill(t, tr, now)
	_, st, _ := tr.Stats("c")
	// u1..u4, u6 now; u7 90 min back; u5 2 h back; u8 25 h back.
	want := sketch.ReachWindow{LastHour: 5, LastDay: 7, Total: 8}
	if st.Reach == nil || *st.Reach != want {
		t.Fatalf("reach %+v, want %+v", st.Reach, want)
	}
}

// TestAnalyticsSurviveRestarts: reach and ads come back the same after a
// clean shutdown (snapshot) and after a crash (log replay), in both modes.
func TestAnalyticsSurviveRestarts(t *testing.T) {
	for _, mode := range []string{"bloom", "exact"} {
		for _, clean := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/clean=%v", mode, clean), func(t *testing.T) {
				dir := t.TempDir()
				clock := &fakeClock{t: suiteNow(t)}
				set := func(o *Options) { o.MaxAdsPerCampaign = 2 }
				tr := openDir(t, mode, dir, clock, set)
				now := clock.Now()
				create(t, tr, "c", now.Add(-72*time.Hour))
				analyticsFill(t, tr, now)
				_, before, _ := tr.Stats("c")
				if clean {
					if err := tr.Shutdown(); err != nil {
						t.Fatal(err)
					}
				} else if err := tr.Close(); err != nil { // no snapshot: the log replays
					t.Fatal(err)
				}
				back := openDir(t, mode, dir, clock, set)
				_, ads, err := back.Ads("c")
				if err != nil || !reflect.DeepEqual(ads, wantAds()) {
					t.Fatalf("ads after restart %+v, %v;\nwant %+v", ads, err, wantAds())
				}
				_, after, _ := back.Stats("c")
				if *after.Reach != *before.Reach || after.Window != before.Window || after.Duplicates != before.Duplicates {
					t.Fatalf("after restart %+v / %+v, before %+v / %+v", after, *after.Reach, before, *before.Reach)
				}
				// A new ad id is still beyond the cap; a known one counts.
				back.Track(adImp("c", "n1", "a9", now))
				back.Track(adImp("c", "n2", "a2", now))
				_, ads, _ = back.Ads("c")
				if ads.Other.Total != 2 || ads.Ads[1].Total != 3 {
					t.Fatalf("after restart and two more: %+v", ads)
				}
				// Again, from a snapshot written by the restarted tracker.
				if err := back.Snapshot(); err != nil {
					t.Fatal(err)
				}
				back.Close()
				again := openDir(t, mode, dir, clock, set)
				_, ads2, _ := again.Ads("c")
				if !reflect.DeepEqual(ads2, ads) {
					t.Fatalf("from the second snapshot %+v, want %+v", ads2, ads)
				}
			})
		}
	}
}

// TestDeleteForgetsAnalytics: a campaign created again under a deleted
// one's id starts without its reach and ads.
func TestDeleteForgetsAnalytics(t *testing.T) {
	clock := &fakeClock{t: suiteNow(t)}
	tr := openTracker(t, clock, func(o *Options) { o.MaxSkew = time.Minute })
	now := clock.Now()
	create(t, tr, "c", now.Add(-72*time.Hour))
	analyticsFill(t, tr, now)
	if err := tr.Delete("c"); err != nil {
		t.Fatal(err)
	}
	create(t, tr, "c", now.Add(-72*time.Hour))
	_, st, _ := tr.Stats("c")
	_, ads, _ := tr.Ads("c")
	if *st.Reach != (sketch.ReachWindow{}) || len(ads.Ads) != 0 || ads.None != (stats.Window{}) {
		t.Fatalf("re-created: reach %+v, ads %+v", *st.Reach, ads)
	}
}
