package api

import (
	"net/url"
	"testing"
	"time"
)

type historyJSON struct {
	CampaignID string `json:"campaign_id"`
	Resolution string `json:"resolution"`
	Points     []struct {
		T     string `json:"t"`
		Start string `json:"start"`
		Count uint64 `json:"count"`
	} `json:"points"`
}

func (h historyJSON) sum() (n uint64) {
	for _, p := range h.Points {
		n += p.Count
	}
	return n
}

// TestSeriesHistory: the 7d, 30d and 90d windows and from/to/step ranges,
// their points, alignment and the 422s for what is not kept, in both
// stores.
func TestSeriesHistory(t *testing.T) {
	ts := newTestServer(t, "exact")
	ts.createCampaign("c")
	for i, ago := range []time.Duration{0, 2 * time.Hour, 3 * 24 * time.Hour, 20 * 24 * time.Hour, 60 * 24 * time.Hour, 120 * 24 * time.Hour} {
		ts.do("POST", "/api/v1/impressions", trackAt("c", string(rune('a'+i)), testNow.Add(-ago))).want(t, 200)
	}
	get := func(q string, status int) historyJSON {
		t.Helper()
		var h historyJSON
		r := ts.do("GET", "/api/v1/campaigns/c/series?"+q, "").want(t, status)
		if status == 200 {
			r.decode(t, &h)
		}
		return h
	}
	day := testNow.UTC().Truncate(24 * time.Hour)
	hour := testNow.UTC().Truncate(time.Hour)
	h := get("from="+url.QueryEscape(rfc3339(testNow.Add(-3*time.Hour)))+"&step=1m", 200)
	if h.Resolution != "1m" || len(h.Points) != 181 || h.sum() != 2 || h.Points[180].Start != testNow.UTC().Truncate(time.Minute).Format(time.RFC3339) {
		t.Fatalf("3 hours of minutes: %s, %d points, sum %d", h.Resolution, len(h.Points), h.sum())
	}
	for _, tc := range []struct {
		window string
		res    string
		points int
		sum    uint64
		last   time.Time
	}{
		{"7d", "1h", 168, 3, hour},
		{"30d", "1d", 30, 4, day},
		{"90d", "1d", 90, 5, day},
	} {
		h := get("window="+tc.window, 200)
		if h.CampaignID != "c" || h.Resolution != tc.res || len(h.Points) != tc.points || h.sum() != tc.sum {
			t.Fatalf("window %s: %s, %d points, sum %d; want %s, %d, %d", tc.window, h.Resolution, len(h.Points), h.sum(), tc.res, tc.points, tc.sum)
		}
		if last := h.Points[len(h.Points)-1]; last.Start != tc.last.Format(time.RFC3339) || last.T != last.Start {
			t.Fatalf("window %s: last point %+v, want %s", tc.window, last, tc.last.Format(time.RFC3339))
		}
	}
	// Daily points for life; to later than now reads up to now.
	h = get("from="+url.QueryEscape(rfc3339(testNow.Add(-200*24*time.Hour)))+"&to="+url.QueryEscape(rfc3339(testNow.Add(48*time.Hour)))+"&step=1d", 200)
	if len(h.Points) != 201 || h.sum() != 6 {
		t.Fatalf("200 days: %d points, sum %d", len(h.Points), h.sum())
	}
	oldestHour := day.Add(-89 * 24 * time.Hour)
	h = get("from="+url.QueryEscape(rfc3339(oldestHour))+"&step=1h", 200)
	if h.sum() != 5 {
		t.Fatalf("every kept hour sums to %d, want 5", h.sum())
	}
	for _, tc := range []struct{ query, msg string }{
		{"from=" + url.QueryEscape(rfc3339(oldestHour.Add(-time.Second))) + "&step=1h", "hourly points are kept for 90 days: from must be at or after " + oldestHour.Format(time.RFC3339) + " (or take a longer step)"},
		{"from=" + url.QueryEscape(rfc3339(testNow.Add(-25*time.Hour))) + "&step=1m", "minute points are kept for 24 hours: from must be at or after " + testNow.UTC().Truncate(time.Minute).Add(-1439*time.Minute).Format(time.RFC3339) + " (or take a longer step)"},
		{"from=" + url.QueryEscape(rfc3339(testNow)) + "&to=" + url.QueryEscape(rfc3339(testNow.Add(-time.Hour))) + "&step=1h", "from must not be after to"},
		{"from=" + url.QueryEscape(rfc3339(testNow.Add(-20000*24*time.Hour))) + "&step=1d", "a range holds at most 10000 points: narrow it or take a longer step"},
		{"from=" + url.QueryEscape(rfc3339(testNow)) + "&step=1w", "step must be 1m, 1h or 1d"},
		{"from=" + url.QueryEscape(rfc3339(testNow)), "step must be 1m, 1h or 1d"},
		{"from=yesterday&step=1h", "from and to must be RFC 3339 date-times, e.g. 2026-01-02T15:04:05Z"},
		{"step=1h", "from is required with to or step"},
		{"window=7d&step=1h", "give window, or from (with to and step), not both"},
		{"window=1y", "window must be 1h, 24h, 7d, 30d or 90d"},
	} {
		wantError(t, ts.do("GET", "/api/v1/campaigns/c/series?"+tc.query, "").want(t, 422), 422, tc.msg)
	}
}
