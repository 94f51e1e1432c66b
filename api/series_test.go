package api

import (
	"testing"
	"time"
)

func TestSeries(t *testing.T) {
	ts := newTestServer(t, "exact")
	ts.createCampaign("c1")
	for i, at := range []time.Time{testNow, testNow.Add(-time.Second), testNow.Add(-5 * time.Minute), testNow.Add(-3 * time.Hour)} {
		ts.do("POST", "/api/v1/impressions", trackAt("c1", string(rune('a'+i)), at)).want(t, 200)
	}
	type series struct {
		CampaignID string `json:"campaign_id"`
		Resolution string
		Points     []struct {
			T     string
			Count uint64
		}
	}
	minute := func(d time.Duration) string { return testNow.Add(d).Truncate(time.Minute).Format(time.RFC3339) }
	now, fiveAgo, threeHoursAgo := minute(0), minute(-5*time.Minute), minute(-3*time.Hour)
	for _, tc := range []struct {
		query  string
		points int
		want   map[string]uint64 // non-zero points
	}{
		{"", 60, map[string]uint64{now: 2, fiveAgo: 1}},
		{"?window=1h", 60, map[string]uint64{now: 2, fiveAgo: 1}},
		{"?window=24h", 1440, map[string]uint64{now: 2, fiveAgo: 1, threeHoursAgo: 1}},
	} {
		var s series
		ts.do("GET", "/api/v1/campaigns/c1/series"+tc.query, "").want(t, 200).decode(t, &s)
		if s.CampaignID != "c1" || s.Resolution != "1m" || len(s.Points) != tc.points {
			t.Fatalf("%s: got %s %s with %d points, want c1 1m with %d", tc.query, s.CampaignID, s.Resolution, len(s.Points), tc.points)
		}
		if s.Points[len(s.Points)-1].T != now {
			t.Fatalf("%s: last point %s, want the current minute", tc.query, s.Points[len(s.Points)-1].T)
		}
		var sum uint64
		for i, p := range s.Points {
			if i > 0 {
				prev, _ := time.Parse(time.RFC3339, s.Points[i-1].T)
				cur, _ := time.Parse(time.RFC3339, p.T)
				if cur.Sub(prev) != time.Minute {
					t.Fatalf("%s: points %d and %d are %s apart", tc.query, i-1, i, cur.Sub(prev))
				}
			}
			if p.Count != tc.want[p.T] {
				t.Fatalf("%s: %s has %d, want %d", tc.query, p.T, p.Count, tc.want[p.T])
			}
			sum += p.Count
		}
		st := ts.stats("c1")
		if (tc.points == 60 && sum != st.LastHour) || (tc.points == 1440 && sum != st.LastDay) {
			t.Fatalf("%s: series sums to %d, stats say %+v", tc.query, sum, st)
		}
	}
	ts.do("GET", "/api/v1/campaigns/c1/series?window=2h", "").want(t, 422)
	ts.do("GET", "/api/v1/campaigns/nope/series?window=2d", "").want(t, 422)
	ts.do("GET", "/api/v1/campaigns/nope/series", "").want(t, 404)
	ts.do("POST", "/api/v1/campaigns/c1/series", "").want(t, 405)
}

func TestReadyz(t *testing.T) {
	ts := newTestServer(t, "exact")
	if got := string(ts.do("GET", "/readyz", "").want(t, 200).body); got != `{"status":"ready"}` {
		t.Fatalf("readyz while serving: %s", got)
	}
	ts.srv.ready.Store(false) // as Shutdown does first
	ts.do("GET", "/readyz", "").want(t, 503)
}
