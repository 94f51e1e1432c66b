package api

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestCreateCampaign(t *testing.T) {
	ts := newTestServer(t, "exact")
	var got campaignCreatedJSON
	r := ts.do("POST", "/api/v1/campaigns", `{"id":"spring-2026","name":"Spring sale","start_time":"2026-03-01T08:00:00+01:00","budget":12}`).want(t, 201)
	r.decode(t, &got)
	want := campaignCreatedJSON{campaignJSON{ID: "spring-2026", Name: "Spring sale", StartTime: "2026-03-01T07:00:00Z"}, "campaign created"}
	if !sameJSON(got, want) {
		t.Fatalf("body: got %+v, want %+v", got, want)
	}
	if loc := r.header["Location"]; loc != "/api/v1/campaigns/spring-2026" {
		t.Fatalf("Location: got %q, want /api/v1/campaigns/spring-2026", loc)
	}
	var c campaignJSON
	ts.do("GET", "/api/v1/campaigns/spring-2026", "").want(t, 200).decode(t, &c)
	if !sameJSON(c, want.campaignJSON) {
		t.Fatalf("GET: got %+v, want %+v", c, want.campaignJSON)
	}
}

func TestCreateCampaignDefaults(t *testing.T) {
	ts := newTestServer(t, "exact")
	var got campaignCreatedJSON
	// null counts as absent for id and start_time.
	r := ts.do("POST", "/api/v1/campaigns", `{"id":null,"name":"Generated","start_time":null}`).want(t, 201)
	r.decode(t, &got)
	if !regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`).MatchString(got.ID) {
		t.Fatalf("generated id %q does not match the id pattern", got.ID)
	}
	if r.header["Location"] != "/api/v1/campaigns/"+got.ID {
		t.Fatalf("Location %q does not name the generated id %q", r.header["Location"], got.ID)
	}
	// The fake clock stands at a whole second; the default start is that second.
	if want := testNow.Format(time.RFC3339); got.StartTime != want {
		t.Fatalf("default start_time: got %q, want %s", got.StartTime, want)
	}
	var other campaignCreatedJSON
	ts.do("POST", "/api/v1/campaigns", `{"name":"Generated"}`).want(t, 201).decode(t, &other)
	if other.ID == got.ID {
		t.Fatalf("two generated ids are equal: %q", got.ID)
	}
}

func TestCreateCampaignErrors(t *testing.T) {
	ts := newTestServer(t, "exact")
	ts.createCampaign("taken")
	for _, tc := range []struct {
		name   string
		body   string
		status int
	}{
		{"duplicate id", `{"id":"taken","name":"x"}`, 409},
		{"malformed JSON", `{"name":`, 400},
		{"empty body", ``, 400},
		{"array body", `[{"name":"x"}]`, 400},
		{"name of wrong type", `{"name":42}`, 400},
		{"id of wrong type", `{"id":7,"name":"x"}`, 400},
		{"start_time of wrong type", `{"name":"x","start_time":1700000000}`, 400},
		{"missing name", `{"id":"a"}`, 422},
		{"null name", `{"name":null}`, 422},
		{"empty name", `{"name":""}`, 422},
		{"name of 201 characters", `{"name":"` + strings.Repeat("é", 201) + `"}`, 422},
		{"empty id", `{"id":"","name":"x"}`, 422},
		{"id .", `{"id":".","name":"x"}`, 422},
		{"id ..", `{"id":"..","name":"x"}`, 422},
		{"id with slash", `{"id":"a/b","name":"x"}`, 422},
		{"id with space", `{"id":"a b","name":"x"}`, 422},
		{"id of 65 characters", `{"id":"` + strings.Repeat("a", 65) + `","name":"x"}`, 422},
		{"bad start_time", `{"name":"x","start_time":"yesterday"}`, 422},
		{"start_time without zone", `{"name":"x","start_time":"2026-01-01T00:00:00"}`, 422},
		{"start_time with a comma", `{"name":"x","start_time":"2026-01-01T00:00:00,5Z"}`, 422},
		{"start_time at +24:00", `{"name":"x","start_time":"2026-01-01T00:00:00+24:00"}`, 422},
		{"start_time leap second", `{"name":"x","start_time":"2016-12-31T23:59:60Z"}`, 422},
		{"start_time before 1678", `{"name":"x","start_time":"1677-12-31T23:59:59.999999999Z"}`, 422},
		{"start_time in 1600", `{"name":"x","start_time":"1600-01-01T00:00:00Z"}`, 422},
		{"start_time in 2262", `{"name":"x","start_time":"2262-01-01T00:00:00Z"}`, 422},
		{"start_time in 9999", `{"name":"x","start_time":"9999-12-31T23:59:59Z"}`, 422},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts.do("POST", "/api/v1/campaigns", tc.body).want(t, tc.status)
		})
	}
	// No error created anything.
	var list campaignListJSON
	ts.do("GET", "/api/v1/campaigns", "").want(t, 200).decode(t, &list)
	if len(list.Campaigns) != 1 || list.Campaigns[0].ID != "taken" || list.Campaigns[0].Name != "Campaign taken" {
		t.Fatalf("campaigns after errors: got %+v, want only the original 'taken'", list.Campaigns)
	}
}

func TestCreateCampaignLimits(t *testing.T) {
	ts := newTestServer(t, "exact")
	ts.do("POST", "/api/v1/campaigns", `{"id":"`+strings.Repeat("a", 64)+`","name":"`+strings.Repeat("é", 200)+`"}`).want(t, 201)
	ts.do("POST", "/api/v1/campaigns", `{"id":"A.b_c-9","name":"x"}`).want(t, 201)
}

func TestListCampaigns(t *testing.T) {
	ts := newTestServer(t, "exact")
	var list campaignListJSON
	ts.do("GET", "/api/v1/campaigns", "").want(t, 200).decode(t, &list)
	if list.Campaigns == nil || len(list.Campaigns) != 0 {
		t.Fatalf("empty list: got %s, want {\"campaigns\":[]}", ts.do("GET", "/api/v1/campaigns", "").body)
	}
	for _, id := range []string{"b", "c", "a", "B", "a-1"} {
		ts.createCampaign(id)
	}
	ts.do("GET", "/api/v1/campaigns", "").want(t, 200).decode(t, &list)
	var ids []string
	for _, c := range list.Campaigns {
		ids = append(ids, c.ID)
	}
	if got, want := strings.Join(ids, ","), "B,a,a-1,b,c"; got != want {
		t.Fatalf("ids: got %s, want %s", got, want)
	}
}

func TestGetCampaignNotFound(t *testing.T) {
	ts := newTestServer(t, "exact")
	ts.do("GET", "/api/v1/campaigns/nope", "").want(t, 404)
	ts.do("GET", "/api/v1/campaigns/nope/stats", "").want(t, 404)
}

func TestRoutingErrors(t *testing.T) {
	ts := newTestServer(t, "exact")
	for _, tc := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/nope", 404, ""},
		{"GET", "/api/v1/campaigns/", 404, ""},
		{"POST", "/api/v1/impressions/", 404, ""},
		{"DELETE", "/api/v1/campaigns", 405, "GET, HEAD, POST"},
		{"PUT", "/api/v1/campaigns/x", 405, "DELETE, GET, HEAD, PATCH"},
		{"GET", "/api/v1/impressions", 405, "OPTIONS, POST"},
		{"GET", "/api/v1/impressions/batch", 405, "OPTIONS, POST"},
		{"POST", "/api/v1/campaigns/x/stats", 405, "GET, HEAD"},
		{"POST", "/healthz", 405, "GET, HEAD"},
		{"OPTIONS", "/healthz", 405, "GET, HEAD"},
		{"POST", "/readyz", 405, "GET, HEAD"},
	} {
		r := ts.do(tc.method, tc.path, "").want(t, tc.status)
		if got := r.header["Allow"]; got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
}

func TestHealthz(t *testing.T) {
	ts := newTestServer(t, "bloom")
	if got := string(ts.do("GET", "/healthz", "").want(t, 200).body); got != `{"status":"ok"}` {
		t.Fatalf("healthz: got %s", got)
	}
}

// startTimes are start_times at the edges of what is stored, each with
// what the API answers for it (UTC, nanoseconds kept).
var startTimes = []struct{ in, want string }{
	{"1678-01-01T00:00:00Z", "1678-01-01T00:00:00Z"},
	{"2261-12-31T23:59:59.999999999Z", "2261-12-31T23:59:59.999999999Z"},
	{"1969-12-31T23:59:59.000000001Z", "1969-12-31T23:59:59.000000001Z"},
	{"2026-03-01t08:00:00.5+01:00", "2026-03-01T07:00:00.5Z"},
	{"2261-12-31T00:00:00-23:59", "2261-12-31T23:59:00Z"},
}

// TestStartTimeRoundTrip: every start_time the API accepts reads back
// unchanged, in both stores; out of range ones get 422 with the range
// (TestCreateCampaignErrors), never a silently different instant.
func TestStartTimeRoundTrip(t *testing.T) {
	ts := newTestServer(t, "exact")
	for i, tc := range startTimes {
		id := fmt.Sprintf("s%d", i)
		var created campaignCreatedJSON
		ts.do("POST", "/api/v1/campaigns", `{"id":"`+id+`","name":"x","start_time":"`+tc.in+`"}`).want(t, 201).decode(t, &created)
		var got campaignJSON
		ts.do("GET", "/api/v1/campaigns/"+id, "").want(t, 200).decode(t, &got)
		if created.StartTime != tc.want || got.StartTime != tc.want {
			t.Errorf("start_time %s: created %s, read back %s; want %s", tc.in, created.StartTime, got.StartTime, tc.want)
		}
	}
	r := ts.do("POST", "/api/v1/campaigns", `{"name":"x","start_time":"1600-01-01T00:00:00Z"}`).want(t, 422)
	if !strings.Contains(string(r.body), "1678-01-01T00:00:00Z to 2261-12-31T23:59:59.999999999Z") {
		t.Fatalf("out of range start_time: %s, want the range named", r.body)
	}
}
