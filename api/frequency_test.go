package api

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"strings"
	"testing"
	"time"
)

type exposureJSON struct {
	Window string `json:"window"`
	Count  uint64 `json:"count"`
	Max    uint64 `json:"max"`
}

type frequencyItemJSON struct {
	CampaignID string          `json:"campaign_id"`
	Allowed    *bool           `json:"allowed"`
	Exposures  *[]exposureJSON `json:"exposures"`
	Error      string          `json:"error"`
	Code       int             `json:"code"`
}

type frequencyJSON struct {
	UserID    string              `json:"user_id"`
	Campaigns []frequencyItemJSON `json:"campaigns"`
}

// check asks which of ids user is still under the caps of.
func (ts *testServer) check(user string, ids ...string) frequencyJSON {
	ts.t.Helper()
	body := fmt.Sprintf(`{"user_id":%q,"campaign_ids":["%s"]}`, user, strings.Join(ids, `","`))
	var f frequencyJSON
	ts.do("POST", "/api/v1/frequency", body).want(ts.t, 200).decode(ts.t, &f)
	if f.UserID != user || len(f.Campaigns) != len(ids) {
		ts.t.Fatalf("check %s: got %+v, want one item per id", body, f)
	}
	for i, it := range f.Campaigns {
		if it.CampaignID != ids[i] {
			ts.t.Fatalf("item %d is %q, want %q: not in request order", i, it.CampaignID, ids[i])
		}
	}
	return f
}

// counts renders an item as "allowed 2/3@1h 4/10@24h" (or "404 campaign
// not found") for exact comparisons.
func (it frequencyItemJSON) String() string {
	if it.Error != "" {
		return fmt.Sprintf("%d %s", it.Code, it.Error)
	}
	var b strings.Builder
	if it.Allowed == nil || it.Exposures == nil {
		return "missing allowed or exposures"
	}
	if *it.Allowed {
		b.WriteString("allowed")
	} else {
		b.WriteString("capped")
	}
	for _, e := range *it.Exposures {
		fmt.Fprintf(&b, " %d/%d@%s", e.Count, e.Max, e.Window)
	}
	return b.String()
}

func (ts *testServer) track(campaign, user string) {
	ts.t.Helper()
	ts.do("POST", "/api/v1/impressions", fmt.Sprintf(`{"campaign_id":%q,"user_id":%q}`, campaign, user)).want(ts.t, 200)
}

func createCapped(ts *testServer, id, caps string) {
	ts.t.Helper()
	ts.do("POST", "/api/v1/campaigns", fmt.Sprintf(`{"id":%q,"name":"Campaign %s","start_time":%q,"frequency_caps":%s}`, id, id, pastStart, caps)).want(ts.t, 201)
}

// TestFrequencyCapsOnCampaigns: caps given at creation are shown by every
// campaign answer, in their order and canonical window form; PUT replaces
// them, [] removes them; PATCH keeps them.
func TestFrequencyCapsOnCampaigns(t *testing.T) {
	ts := newTestServer(t, "exact")
	var c campaignCreatedJSON
	ts.do("POST", "/api/v1/campaigns", `{"id":"c","name":"C","frequency_caps":[{"max":3,"window":"1h"},{"max":10,"window":"1440m"},{"max":1e1,"window":"1h30m"}]}`).want(t, 201).decode(t, &c)
	want := "[{Max:3 Window:1h} {Max:10 Window:24h} {Max:10 Window:90m}]"
	if got := fmt.Sprintf("%+v", c.FrequencyCaps); got != want {
		t.Fatalf("created: caps %s, want %s", got, want)
	}
	var g campaignJSON
	ts.do("GET", "/api/v1/campaigns/c", "").want(t, 200).decode(t, &g)
	if got := fmt.Sprintf("%+v", g.FrequencyCaps); got != want {
		t.Fatalf("GET: caps %s, want %s", got, want)
	}
	ts.do("PUT", "/api/v1/campaigns/c/frequency-caps", `[{"max":2,"window":"168h"}]`).want(t, 200).decode(t, &g)
	if got := fmt.Sprintf("%+v", g.FrequencyCaps); got != "[{Max:2 Window:168h}]" || g.ID != "c" || g.Name != "C" {
		t.Fatalf("PUT answered %+v", g)
	}
	ts.do("PATCH", "/api/v1/campaigns/c", `{"name":"Renamed"}`).want(t, 200).decode(t, &g)
	if got := fmt.Sprintf("%+v", g.FrequencyCaps); got != "[{Max:2 Window:168h}]" {
		t.Fatalf("PATCH dropped the caps: %+v", g)
	}
	ts.do("PUT", "/api/v1/campaigns/c/frequency-caps", `[]`).want(t, 200)
	r := ts.do("GET", "/api/v1/campaigns/c", "").want(t, 200)
	if !strings.Contains(string(r.body), `"frequency_caps":[]`) {
		t.Fatalf("after PUT []: %s, want \"frequency_caps\":[]", r.body)
	}
	ts.do("PUT", "/api/v1/campaigns/nope/frequency-caps", `[]`).want(t, 404)
	ts.do("GET", "/api/v1/campaigns/c/frequency-caps", "").want(t, 405)
	// null at creation is none.
	ts.do("POST", "/api/v1/campaigns", `{"id":"n","name":"N","frequency_caps":null}`).want(t, 201)
}

// TestFrequencyCapsRules: every broken rule is a 422 naming the field, on
// creation and on PUT, and changes nothing.
func TestFrequencyCapsRules(t *testing.T) {
	ts := newTestServer(t, "exact")
	createCapped(ts, "c", `[{"max":3,"window":"1h"}]`)
	maxErr := func(i int) string {
		return fmt.Sprintf("frequency_caps[%d].max must be an integer from 1 to 4294967295", i)
	}
	winErr := func(i int) string {
		return fmt.Sprintf(`frequency_caps[%d].window must be a duration from 1m to 168h, e.g. "1h" or "90m"`, i)
	}
	for _, tc := range []struct{ caps, want string }{
		{`[{"max":0,"window":"1h"}]`, maxErr(0)},
		{`[{"max":-1,"window":"1h"}]`, maxErr(0)},
		{`[{"max":1.5,"window":"1h"}]`, maxErr(0)},
		{`[{"max":"3","window":"1h"}]`, maxErr(0)},
		{`[{"window":"1h"}]`, maxErr(0)},
		{`[{"max":4294967296,"window":"1h"}]`, maxErr(0)},
		{`[{"max":3,"window":"1h"},{"max":3,"window":"59s"}]`, winErr(1)},
		{`[{"max":3,"window":"168h1ns"}]`, winErr(0)},
		{`[{"max":3,"window":"1d"}]`, winErr(0)},
		{`[{"max":3,"window":""}]`, winErr(0)},
		{`[{"max":3,"window":60}]`, winErr(0)},
		{`[{"max":3}]`, winErr(0)},
		{`[{"max":3,"window":"-1h"}]`, winErr(0)},
		{`[{"max":1,"window":"1h"},{"max":1,"window":"1h"},{"max":1,"window":"1h"},{"max":1,"window":"1h"},{"max":1,"window":"1h"}]`, "frequency_caps must hold at most 4 caps"},
		{`[3]`, `frequency_caps[0] must be an object such as {"max": 3, "window": "1h"}`},
		{`{"max":3,"window":"1h"}`, `frequency_caps must be an array of caps such as {"max": 3, "window": "1h"}`},
		{`"1h"`, `frequency_caps must be an array of caps such as {"max": 3, "window": "1h"}`},
	} {
		r := ts.do("POST", "/api/v1/campaigns", `{"id":"x","name":"X","frequency_caps":`+tc.caps+`}`).want(t, 422)
		if got := errorMessage(t, r); got != tc.want {
			t.Errorf("create with %s: %q, want %q", tc.caps, got, tc.want)
		}
		if tc.caps[0] != '[' {
			continue // PUT's body must be an array: see below
		}
		r = ts.do("PUT", "/api/v1/campaigns/c/frequency-caps", tc.caps).want(t, 422)
		if got := errorMessage(t, r); got != tc.want {
			t.Errorf("PUT %s: %q, want %q", tc.caps, got, tc.want)
		}
	}
	ts.do("GET", "/api/v1/campaigns/x", "").want(t, 404)
	var g campaignJSON
	ts.do("GET", "/api/v1/campaigns/c", "").want(t, 200).decode(t, &g)
	if got := fmt.Sprintf("%+v", g.FrequencyCaps); got != "[{Max:3 Window:1h}]" {
		t.Fatalf("a refused PUT changed the caps: %s", got)
	}
	ts.do("PUT", "/api/v1/campaigns/c/frequency-caps", `{"max":3}`).want(t, 422)
	ts.do("PUT", "/api/v1/campaigns/c/frequency-caps", `[`).want(t, 400)
	// The bounds themselves are valid.
	ts.do("PUT", "/api/v1/campaigns/c/frequency-caps", `[{"max":1,"window":"1m"},{"max":4294967295,"window":"168h"}]`).want(t, 200)
}

func errorMessage(t *testing.T, r response) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	r.decode(t, &e)
	return e.Error
}

// TestFrequencyCheck: exposures are every accepted impression, counted or
// duplicate; allowed turns false at max; answers come in request order,
// with unknown campaigns as 404 items and uncapped ones allowed.
func TestFrequencyCheck(t *testing.T) {
	for _, mode := range []string{"exact", "bloom"} {
		t.Run(mode, func(t *testing.T) {
			ts := newTestServer(t, mode)
			createCapped(ts, "a", `[{"max":3,"window":"1h"},{"max":10,"window":"24h"}]`)
			createCapped(ts, "b", `[{"max":1,"window":"10m"}]`)
			createCapped(ts, "free", `[]`)
			got := ts.check("u1", "a", "b", "free", "nope", "a")
			want := []string{"allowed 0/3@1h 0/10@24h", "allowed 0/1@10m", "allowed", "404 campaign not found", "allowed 0/3@1h 0/10@24h"}
			for i := range want {
				if got.Campaigns[i].String() != want[i] {
					t.Fatalf("item %d: %s, want %s", i, got.Campaigns[i], want[i])
				}
			}
			ts.track("a", "u1")
			ts.track("a", "u1") // a duplicate is an exposure too
			ts.track("b", "u1")
			ts.track("a", "u2")
			got = ts.check("u1", "b", "a")
			if s := got.Campaigns[0].String() + "; " + got.Campaigns[1].String(); s != "capped 1/1@10m; allowed 2/3@1h 2/10@24h" {
				t.Fatalf("after 2 impressions of a and 1 of b: %s", s)
			}
			ts.track("a", "u1")
			if s := ts.check("u1", "a").Campaigns[0].String(); s != "capped 3/3@1h 3/10@24h" {
				t.Fatalf("at max: %s", s)
			}
			if s := ts.check("u2", "a").Campaigns[0].String(); s != "allowed 1/3@1h 1/10@24h" {
				t.Fatalf("another user: %s", s)
			}
			// An hour and a slice later the hourly cap has let go, the
			// daily one has not.
			ts.clock.Add(time.Hour + 10*time.Minute)
			if s := ts.check("u1", "a").Campaigns[0].String(); s != "allowed 0/3@1h 3/10@24h" {
				t.Fatalf("70 minutes later: %s", s)
			}
		})
	}
}

// TestFrequencyCapsSeePastExposures: caps set on a campaign later count
// the exposures before them.
func TestFrequencyCapsSeePastExposures(t *testing.T) {
	ts := newTestServer(t, "exact")
	ts.createCampaign("c")
	for range 3 {
		ts.track("c", "u")
	}
	ts.do("PUT", "/api/v1/campaigns/c/frequency-caps", `[{"max":3,"window":"1h"}]`).want(t, 200)
	if s := ts.check("u", "c").Campaigns[0].String(); s != "capped 3/3@1h" {
		t.Fatalf("caps set after 3 impressions: %s", s)
	}
}

// TestFrequencyRequestRules: 400 for malformed bodies and wrong types,
// 422 for a missing user or an empty or oversized list.
func TestFrequencyRequestRules(t *testing.T) {
	ts := newTestServer(t, "exact")
	ts.createCampaign("c")
	ids := make([]string, 1001)
	for i := range ids {
		ids[i] = `"c"`
	}
	for _, tc := range []struct {
		body   string
		status int
		want   string
	}{
		{`{"user_id":"u","campaign_ids":["c"`, 400, ""},
		{`[]`, 400, "request body must be a JSON object"},
		{`{"user_id":5,"campaign_ids":["c"]}`, 400, "user_id must be a string"},
		{`{"user_id":"u","campaign_ids":"c"}`, 400, "campaign_ids must be an array of strings"},
		{`{"user_id":"u","campaign_ids":["c",7]}`, 400, "campaign_ids must be an array of strings"},
		{`{"user_id":"u","campaign_ids":[]}`, 422, "campaign_ids must hold 1 to 1000 campaign ids"},
		{`{"user_id":"u"}`, 422, "campaign_ids must hold 1 to 1000 campaign ids"},
		{`{"user_id":"u","campaign_ids":[` + strings.Join(ids, ",") + `]}`, 422, "campaign_ids must hold 1 to 1000 campaign ids"},
		{`{"campaign_ids":["c"]}`, 422, "user_id is required"},
		{`{"user_id":"","campaign_ids":["c"]}`, 422, "user_id is required"},
		{`{"user_id":"` + strings.Repeat("u", 257) + `","campaign_ids":["c"]}`, 422, "user_id must be at most 256 bytes"},
		{`{"user_id":"a\u0000b","campaign_ids":["c"]}`, 422, "user_id must be valid UTF-8 without control characters"},
		{`{"user_id":"u","campaign_ids":[` + strings.Join(ids[:1000], ",") + `]}`, 200, ""},
	} {
		r := ts.do("POST", "/api/v1/frequency", tc.body).want(t, tc.status)
		if tc.want != "" {
			if got := errorMessage(t, r); got != tc.want {
				t.Errorf("%.60s: %q, want %q", tc.body, got, tc.want)
			}
		}
	}
	ts.do("GET", "/api/v1/frequency", "").want(t, 405)
}

// TestFrequencyNeedsIngestToken: the check is guarded like tracking, not
// by the admin token.
func TestFrequencyNeedsIngestToken(t *testing.T) {
	ts := newTestServer(t, "exact", func(o *testOptions) { o.AdminToken, o.IngestToken = "admin-s3cret", "ingest-s3cret" })
	body := `{"user_id":"u","campaign_ids":["c"]}`
	ts.do("POST", "/api/v1/frequency", body).want(t, 401)
	ts.doWith("POST", "/api/v1/frequency", body, map[string]string{"Authorization": "Bearer admin-s3cret"}).want(t, 401)
	r := ts.doWith("POST", "/api/v1/frequency", body, map[string]string{"Authorization": "Bearer ingest-s3cret"}).want(t, 200)
	if !strings.Contains(string(r.body), `"code":404`) {
		t.Fatalf("unknown campaign: %s", r.body)
	}
	ts.do("PUT", "/api/v1/campaigns/c/frequency-caps", `[]`).want(t, 401)
}

// TestFrequencyCompressedBodies: the check and the caps take a gzip body,
// and refuse a coding they do not know with 415, like the ingest routes.
func TestFrequencyCompressedBodies(t *testing.T) {
	ts := newTestServer(t, "exact")
	createCapped(ts, "c", `[]`)
	gz := func(s string) string {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write([]byte(s))
		w.Close()
		return b.String()
	}
	h := map[string]string{"Content-Encoding": "gzip"}
	ts.doWith("PUT", "/api/v1/campaigns/c/frequency-caps", gz(`[{"max":1,"window":"1h"}]`), h).want(t, 200)
	ts.track("c", "u")
	r := ts.doWith("POST", "/api/v1/frequency", gz(`{"user_id":"u","campaign_ids":["c"]}`), h).want(t, 200)
	if !strings.Contains(string(r.body), `"allowed":false,"exposures":[{"window":"1h","count":1,"max":1}]`) {
		t.Fatalf("gzip check: %s", r.body)
	}
	bad := map[string]string{"Content-Encoding": "compress"}
	ts.doWith("POST", "/api/v1/frequency", `{"user_id":"u","campaign_ids":["c"]}`, bad).want(t, 415)
	ts.doWith("PUT", "/api/v1/campaigns/c/frequency-caps", `[]`, bad).want(t, 415)
}

// TestFrequencyEchoesIdsAsJSON: unknown ids and the user id come back
// escaped, whatever they hold.
func TestFrequencyEchoesIdsAsJSON(t *testing.T) {
	ts := newTestServer(t, "exact")
	r := ts.do("POST", "/api/v1/frequency", `{"user_id":"u\"1é","campaign_ids":["a\"b\\c","\u0001","é"]}`).want(t, 200)
	var f frequencyJSON
	r.decode(t, &f)
	if f.UserID != "u\"1é" || len(f.Campaigns) != 3 || f.Campaigns[0].CampaignID != "a\"b\\c" || f.Campaigns[1].CampaignID != "\x01" || f.Campaigns[2].CampaignID != "é" || f.Campaigns[0].Code != 404 {
		t.Fatalf("echoed %+v from %s", f, r.body)
	}
}
