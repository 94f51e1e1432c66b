package api

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// HTTP tests of a campaign's lifecycle: end_time on create, PATCH and
// DELETE, their statuses and error bodies. Every response is checked
// against docs/openapi.yaml by ts.do. The shared-store run
// (IMPRESSIOND_TEST_STORE=redis) answers exactly alike.

func TestCampaignEndTime(t *testing.T) {
	ts := newTestServer(t, "exact")
	end := rfc3339(testNow.Add(-time.Hour))
	body := `{"id":"ended","name":"Ended","start_time":"` + pastStart + `","end_time":"` + end + `"}`
	var c campaignJSON
	ts.do("POST", "/api/v1/campaigns", body).want(t, 201).decode(t, &c)
	if c.EndTime != end {
		t.Fatalf("created %+v, want end_time %s", c, end)
	}
	ts.do("GET", "/api/v1/campaigns/ended", "").want(t, 200).decode(t, &c)
	if c.EndTime != end {
		t.Fatalf("read back %+v", c)
	}
	ts.do("POST", "/api/v1/impressions", trackAt("ended", "before", testNow.Add(-2*time.Hour))).want(t, 200)
	ts.do("POST", "/api/v1/impressions", trackAt("ended", "at", testNow.Add(-time.Hour))).want(t, 200)
	r := ts.do("POST", "/api/v1/impressions", track("ended", "now")).want(t, 422)
	wantError(t, r, 422, "timestamp is after the campaign's end_time")
	r = ts.do("POST", "/api/v1/impressions/batch", `[`+track("ended", "b1")+`,`+trackAt("ended", "b2", testNow.Add(-90*time.Minute))+`]`).want(t, 200)
	if !strings.Contains(string(r.body), `"error":"timestamp is after the campaign's end_time","code":422`) {
		t.Fatalf("batch: %s", r.body)
	}
	if s := ts.stats("ended"); s.Total != 3 {
		t.Fatalf("total %d, want 3", s.Total)
	}
	for _, tc := range []struct {
		body   string
		status int
		msg    string
	}{
		{`{"name":"X","end_time":"2000-01-01T00:00:00Z","start_time":"2001-01-01T00:00:00Z"}`, 422, "end_time must not be before start_time, and before 2262-01-01T00:00:00Z"},
		{`{"name":"X","end_time":"soon"}`, 422, "end_time must be an RFC 3339 date-time, e.g. 2026-01-02T15:04:05Z, or null to remove it"},
		{`{"name":"X","end_time":5}`, 400, "end_time must be a string or null"},
	} {
		wantError(t, ts.do("POST", "/api/v1/campaigns", tc.body).want(t, tc.status), tc.status, tc.msg)
	}
	// Without an end, end_time is not in the body.
	ts.createCampaign("open")
	r = ts.do("GET", "/api/v1/campaigns/open", "").want(t, 200)
	if strings.Contains(string(r.body), "end_time") {
		t.Fatalf("a campaign without an end: %s", r.body)
	}
}

func TestUpdateCampaign(t *testing.T) {
	ts := newTestServer(t, "bloom")
	ts.createCampaign("c")
	ts.do("POST", "/api/v1/impressions", track("c", "u")).want(t, 200)
	var c campaignJSON
	ts.do("PATCH", "/api/v1/campaigns/c", `{"name":"New name","budget":3}`).want(t, 200).decode(t, &c)
	if !sameJSON(c, (campaignJSON{ID: "c", Name: "New name", StartTime: pastStart})) {
		t.Fatalf("renamed: %+v", c)
	}
	end := rfc3339(testNow.Add(time.Hour))
	ts.do("PATCH", "/api/v1/campaigns/c", `{"end_time":"`+end+`"}`).want(t, 200).decode(t, &c)
	if c.EndTime != end || c.Name != "New name" {
		t.Fatalf("ended: %+v", c)
	}
	ts.do("PATCH", "/api/v1/campaigns/c", `{}`).want(t, 200).decode(t, &c)
	if c.EndTime != end {
		t.Fatalf("an empty patch changed the campaign: %+v", c)
	}
	c = campaignJSON{}
	ts.do("PATCH", "/api/v1/campaigns/c", `{"end_time":null}`).want(t, 200).decode(t, &c)
	if c.EndTime != "" || c.Name != "New name" {
		t.Fatalf("end_time null kept the end: %+v", c)
	}
	for _, tc := range []struct {
		body   string
		status int
		msg    string
	}{
		{`{"name":""}`, 422, "name must be 1 to 200 characters"},
		{`{"name":null}`, 400, "name must be a string"},
		{`{"name":7}`, 400, "name must be a string"},
		{`{"end_time":"2000-01-01T00:00:00Z"}`, 422, "end_time must not be before start_time, and before 2262-01-01T00:00:00Z"},
		{`{"end_time":"later"}`, 422, "end_time must be an RFC 3339 date-time, e.g. 2026-01-02T15:04:05Z, or null to remove it"},
		{`{"end_time":true}`, 400, "end_time must be a string or null"},
		{`[]`, 400, "request body must be a JSON object"},
	} {
		wantError(t, ts.do("PATCH", "/api/v1/campaigns/c", tc.body).want(t, tc.status), tc.status, tc.msg)
	}
	ts.do("PATCH", "/api/v1/campaigns/c", `{"name":`).want(t, 400)
	c = campaignJSON{}
	ts.do("GET", "/api/v1/campaigns/c", "").want(t, 200).decode(t, &c)
	if !sameJSON(c, (campaignJSON{ID: "c", Name: "New name", StartTime: pastStart})) {
		t.Fatalf("refused patches changed the campaign: %+v", c)
	}
	wantError(t, ts.do("PATCH", "/api/v1/campaigns/none", `{"name":"N"}`).want(t, 404), 404, "campaign not found")
	// Counts and dedup are untouched.
	if r := ts.do("POST", "/api/v1/impressions", track("c", "u")).want(t, 200); !strings.Contains(string(r.body), "duplicate") {
		t.Fatalf("a pair counted before the changes: %s", r.body)
	}
	if s := ts.stats("c"); s.Total != 1 {
		t.Fatalf("total %d, want 1", s.Total)
	}
}

func TestDeleteCampaign(t *testing.T) {
	for _, mode := range []string{"bloom", "exact"} {
		t.Run(mode, func(t *testing.T) {
			ts := newTestServer(t, mode)
			ts.createCampaign("d")
			ts.createCampaign("other")
			for i := range 3 {
				for _, id := range []string{"d", "other"} {
					ts.do("POST", "/api/v1/impressions", track(id, fmt.Sprint("u", i))).want(t, 200)
				}
			}
			r := ts.do("DELETE", "/api/v1/campaigns/d", "").want(t, 204)
			if len(r.body) != 0 {
				t.Fatalf("204 with a body: %q", r.body)
			}
			for _, p := range []string{"/api/v1/campaigns/d", "/api/v1/campaigns/d/stats", "/api/v1/campaigns/d/series"} {
				wantError(t, ts.do("GET", p, "").want(t, 404), 404, "campaign not found")
			}
			wantError(t, ts.do("POST", "/api/v1/impressions", track("d", "u0")).want(t, 404), 404, "campaign not found")
			ts.do("DELETE", "/api/v1/campaigns/d", "").want(t, 404)
			ts.do("PATCH", "/api/v1/campaigns/d", `{"name":"N"}`).want(t, 404)
			var list campaignListJSON
			ts.do("GET", "/api/v1/campaigns", "").want(t, 200).decode(t, &list)
			if len(list.Campaigns) != 1 || list.Campaigns[0].ID != "other" {
				t.Fatalf("listing after delete: %+v", list)
			}
			// The same id again starts from nothing.
			ts.createCampaign("d")
			if s := ts.stats("d"); s.Total != 0 || s.LastHour != 0 {
				t.Fatalf("the new campaign starts with %+v", s)
			}
			for i := range 3 {
				r := ts.do("POST", "/api/v1/impressions", track("d", fmt.Sprint("u", i))).want(t, 200)
				if !strings.Contains(string(r.body), `"counted"`) {
					t.Fatalf("u%d of the new campaign: %s, want counted", i, r.body)
				}
			}
			if s := ts.stats("other"); s.Total != 3 {
				t.Fatalf("the other campaign: %+v", s)
			}
		})
	}
}

// wantError checks an error body: exactly {"error": msg, "code": code}.
func wantError(t *testing.T, r response, code int, msg string) {
	t.Helper()
	var e struct {
		Error string `json:"error"`
		Code  int    `json:"code"`
	}
	r.decode(t, &e)
	if e.Error != msg || e.Code != code {
		t.Fatalf("error body %s, want %q with code %d", r.body, msg, code)
	}
}

// TestLifecycleOnRedis: two servers sharing one Redis (of this test's own,
// so that the in-process run covers it too): a PATCH or DELETE answered by
// one holds on the other's next request.
func TestLifecycleOnRedis(t *testing.T) {
	ts, _ := redisServers(t, "exact", 2, 5*time.Second)
	a, b := ts[0], ts[1]
	wantError(t, a.do("POST", "/api/v1/campaigns", `{"id":"e","name":"E","end_time":"2262-01-01T00:00:00Z"}`).want(t, 422), 422,
		"end_time must not be before start_time, and before 2262-01-01T00:00:00Z")
	end := rfc3339(testNow.Add(-time.Hour))
	a.do("POST", "/api/v1/campaigns", `{"id":"e","name":"E","start_time":"`+pastStart+`","end_time":"`+end+`"}`).want(t, 201)
	wantError(t, b.do("POST", "/api/v1/impressions", track("e", "u")).want(t, 422), 422, "timestamp is after the campaign's end_time")

	a.createCampaign("c")
	b.do("POST", "/api/v1/impressions", track("c", "u")).want(t, 200) // b caches c
	var c campaignJSON
	a.do("PATCH", "/api/v1/campaigns/c", `{"name":"New","end_time":"`+end+`"}`).want(t, 200).decode(t, &c)
	if !sameJSON(c, (campaignJSON{ID: "c", Name: "New", StartTime: pastStart, EndTime: end})) {
		t.Fatalf("patched %+v", c)
	}
	b.do("GET", "/api/v1/campaigns/c", "").want(t, 200).decode(t, &c)
	if c.Name != "New" || c.EndTime != end {
		t.Fatalf("b reads %+v", c)
	}
	wantError(t, b.do("POST", "/api/v1/impressions", track("c", "v")).want(t, 422), 422, "timestamp is after the campaign's end_time")
	a.do("PATCH", "/api/v1/campaigns/c", `{"end_time":null}`).want(t, 200)
	b.do("POST", "/api/v1/impressions", track("c", "v")).want(t, 200)

	if r := a.do("DELETE", "/api/v1/campaigns/c", "").want(t, 204); len(r.body) != 0 {
		t.Fatalf("DELETE body %q", r.body)
	}
	wantError(t, b.do("POST", "/api/v1/impressions", track("c", "w")).want(t, 404), 404, "campaign not found")
	for _, path := range []string{"/api/v1/campaigns/c", "/api/v1/campaigns/c/stats"} {
		wantError(t, b.do("GET", path, "").want(t, 404), 404, "campaign not found")
	}
	wantError(t, b.do("DELETE", "/api/v1/campaigns/c", "").want(t, 404), 404, "campaign not found")
	wantError(t, b.do("PATCH", "/api/v1/campaigns/c", `{"name":"X"}`).want(t, 404), 404, "campaign not found")

	b.createCampaign("c")
	if s := a.stats("c"); s.Total != 0 {
		t.Fatalf("re-created: total %d", s.Total)
	}
	a.do("POST", "/api/v1/impressions", track("c", "u")).want(t, 200)
	if s := b.stats("c"); s.Total != 1 {
		t.Fatalf("re-created, a user of the deleted one tracked: total %d, want 1", s.Total)
	}
}
