package api

import (
	"encoding/json"
	"testing"
	"time"
)

// TestAdsRoute: GET /ads answers the rows by total, other beyond
// -max-ads-per-campaign, none without an ad id, adding up to /stats;
// reach in /stats counts distinct users, duplicates included. Both
// stores.
func TestAdsRoute(t *testing.T) {
	ts := newTestServer(t, "exact", func(o *testOptions) { o.MaxAdsPerCampaign = 2 })
	ts.createCampaign("c1")
	for _, body := range []string{
		`{"campaign_id":"c1","user_id":"u1","ad_id":"b"}`,
		`{"campaign_id":"c1","user_id":"u2","ad_id":"a"}`,
		`{"campaign_id":"c1","user_id":"u3","ad_id":"a"}`,
		`{"campaign_id":"c1","user_id":"u3","ad_id":"a"}`,
		`{"campaign_id":"c1","user_id":"u4","ad_id":"z"}`,
		`{"campaign_id":"c1","user_id":"u5"}`,
	} {
		ts.do("POST", "/api/v1/impressions", body).want(t, 200)
	}
	var got map[string]any
	ts.do("GET", "/api/v1/campaigns/c1/ads", "").want(t, 200).decode(t, &got)
	b, _ := json.Marshal(got)
	want := `{"ads":[{"ad_id":"a","last_day":2,"last_hour":2,"total":2},{"ad_id":"b","last_day":1,"last_hour":1,"total":1}],` +
		`"campaign_id":"c1","none":{"last_day":1,"last_hour":1,"total":1},"other":{"last_day":1,"last_hour":1,"total":1}}`
	if string(b) != want {
		t.Fatalf("ads %s,\nwant %s", b, want)
	}
	if s := ts.stats("c1"); s.Total != 5 || s.Reach == nil || *s.Reach != (windowJSON{5, 5, 5}) || s.Duplicates.Total != 1 {
		t.Fatalf("stats %+v reach %+v", s, s.Reach)
	}
	ts.do("GET", "/api/v1/campaigns/nope/ads", "").want(t, 404).wantBody(t, `{"error":"campaign not found","code":404}`)
	ts.do("POST", "/api/v1/campaigns/c1/ads", "").want(t, 405)
}

func (r response) wantBody(t testing.TB, body string) {
	t.Helper()
	if string(r.body) != body {
		t.Fatalf("body %s, want %s", r.body, body)
	}
}

// TestAdsOnRedis: two servers on one Redis answer the same per-ad rows,
// whichever took the impressions (GET and HEAD).
func TestAdsOnRedis(t *testing.T) {
	servers, _ := redisServers(t, "exact", 2, time.Second)
	a, b := servers[0], servers[1]
	a.createCampaign("c1")
	a.do("POST", "/api/v1/impressions", `{"campaign_id":"c1","user_id":"u1","ad_id":"a"}`).want(t, 200)
	b.do("POST", "/api/v1/impressions/batch", `[{"campaign_id":"c1","user_id":"u2","ad_id":"a"},{"campaign_id":"c1","user_id":"u1","ad_id":"b"},{"campaign_id":"c1","user_id":"u3"}]`).want(t, 200)
	want := `{"campaign_id":"c1","ads":[{"ad_id":"a","last_hour":2,"last_day":2,"total":2}],"other":{"last_hour":0,"last_day":0,"total":0},"none":{"last_hour":1,"last_day":1,"total":1}}`
	for _, ts := range servers {
		ts.do("GET", "/api/v1/campaigns/c1/ads", "").want(t, 200).wantBody(t, want)
		ts.do("HEAD", "/api/v1/campaigns/c1/ads", "").wantFor(t, "HEAD", 200)
		ts.do("HEAD", "/api/v1/campaigns/nope/ads", "").wantFor(t, "HEAD", 404)
	}
}
