package api

import (
	"strings"
	"testing"
)

// TestHostileInput sends every kind of hostile body through the real
// server: each gets a 4xx JSON error (or the documented acceptance), none
// counts, and afterwards the stats are unchanged and a good request works.
func TestHostileInput(t *testing.T) {
	ts := newTestServer(t, "exact", func(o *testOptions) { o.MaxBodySize = 1 << 20 })
	ts.createCampaign("c1")
	deep := func(open, close string, n int) string {
		return strings.Repeat(open, n) + "1" + strings.Repeat(close, n)
	}
	for _, tc := range []struct {
		name   string
		path   string // default: single impression
		body   string
		status int
	}{
		{"100,000 brackets", "", strings.Repeat("[", 100000), 400},
		{"100,000 brackets, batch", "/api/v1/impressions/batch", strings.Repeat("[", 100000), 400},
		{"deep objects", "", deep(`{"a":`, "}", 100000), 400},
		{"deep unknown field", "", `{"campaign_id":"c1","user_id":"u","x":` + deep("[", "]", 400) + `}`, 400},
		{"number for user_id", "", `{"campaign_id":"c1","user_id":12345}`, 400},
		{"array for campaign_id", "", `{"campaign_id":["c1"],"user_id":"u"}`, 400},
		{"object for timestamp", "", `{"campaign_id":"c1","user_id":"u","timestamp":{}}`, 400},
		{"true for ad_id", "", `{"campaign_id":"c1","user_id":"u","ad_id":true}`, 400},
		{"nulls", "", `{"campaign_id":null,"user_id":null,"ad_id":null,"timestamp":null}`, 422},
		{"null body", "", `null`, 400},
		{"invalid UTF-8 in user_id", "", "{\"campaign_id\":\"c1\",\"user_id\":\"u\xff\xfe\"}", 422},
		{"NUL in user_id", "", `{"campaign_id":"c1","user_id":"u\u0000"}`, 422},
		{"raw control byte in user_id", "", "{\"campaign_id\":\"c1\",\"user_id\":\"u\x01\"}", 400},
		{"newline escape in user_id", "", `{"campaign_id":"c1","user_id":"u\nx"}`, 422},
		{"C1 control in ad_id", "", `{"campaign_id":"c1","user_id":"u","ad_id":"\u0085"}`, 422},
		{"lone surrogate in user_id", "", `{"campaign_id":"c1","user_id":"\ud800"}`, 200}, // decodes to U+FFFD, a valid character
		{"invalid UTF-8 in campaign_id", "", "{\"campaign_id\":\"c\xff\",\"user_id\":\"u\"}", 404},
		{"huge user_id", "", `{"campaign_id":"c1","user_id":"` + strings.Repeat("u", 500000) + `"}`, 422},
		{"body over the limit", "", `{"campaign_id":"c1","user_id":"` + strings.Repeat("u", 2<<20) + `"}`, 413},
		{"trailing garbage", "", `{"campaign_id":"c1","user_id":"u"}{}`, 400},
		{"bad escape", "", `{"campaign_id":"c1","user_id":"\x"}`, 400},
		{"leading zero number in unknown field", "", `{"campaign_id":"c1","user_id":"u","n":01}`, 400},
		{"batch of nulls", "/api/v1/impressions/batch", `[null,null]`, 400},
		{"batch with a string item", "/api/v1/impressions/batch", `[{"campaign_id":"c1","user_id":"u"},"x"]`, 400},
		{"invalid UTF-8 in campaign name", "/api/v1/campaigns", "{\"name\":\"\xff\"}", 422},
		{"number for campaign name", "/api/v1/campaigns", `{"name":1}`, 400},
		{"deep campaign body", "/api/v1/campaigns", deep(`{"a":`, "}", 100000), 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path
			if path == "" {
				path = "/api/v1/impressions"
			}
			ts.do("POST", path, tc.body).want(t, tc.status)
		})
	}
	// Only the lone-surrogate impression was accepted.
	if got := ts.stats("c1"); got.Total != 1 {
		t.Fatalf("stats after hostile input: %+v, want a total of 1", got)
	}
	var list campaignListJSON
	ts.do("GET", "/api/v1/campaigns", "").want(t, 200).decode(t, &list)
	if len(list.Campaigns) != 1 {
		t.Fatalf("hostile bodies created campaigns: %+v", list.Campaigns)
	}
	ts.do("POST", "/api/v1/impressions", track("c1", "good")).want(t, 200)
	if got := ts.stats("c1"); got.Total != 2 {
		t.Fatalf("a good request after hostile input: total %d, want 2", got.Total)
	}
}
