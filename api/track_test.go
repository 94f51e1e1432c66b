package api

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func track(campaign, user string) string {
	return fmt.Sprintf(`{"campaign_id":%q,"user_id":%q}`, campaign, user)
}

func trackAt(campaign, user string, at time.Time) string {
	return fmt.Sprintf(`{"campaign_id":%q,"user_id":%q,"timestamp":%q}`, campaign, user, at.Format(time.RFC3339Nano))
}

func TestTrackCountsOnce(t *testing.T) {
	for _, mode := range []string{"bloom", "exact"} {
		t.Run(mode, func(t *testing.T) {
			ts := newTestServer(t, mode)
			ts.createCampaign("c1")
			var res struct{ Status, Message string }
			ts.do("POST", "/api/v1/impressions", track("c1", "u1")).want(t, 200).decode(t, &res)
			if res.Status != "counted" || res.Message == "" {
				t.Fatalf("first impression: got %+v, want status counted with a message", res)
			}
			ts.do("POST", "/api/v1/impressions", `{"campaign_id":"c1","user_id":"u1","ad_id":"banner-7"}`).want(t, 200).decode(t, &res)
			if res.Status != "duplicate" || res.Message == "" {
				t.Fatalf("repeat: got %+v, want status duplicate with a message", res)
			}
			ts.do("POST", "/api/v1/impressions", track("c1", "u2")).want(t, 200).decode(t, &res)
			if res.Status != "counted" {
				t.Fatalf("other user: got %+v, want counted", res)
			}
			want := statsJSON{"c1", 2, 2, 2, windowJSON{1, 1, 1}, &windowJSON{2, 2, 2}}
			if got := ts.stats("c1"); !reflect.DeepEqual(got, want) {
				t.Fatalf("stats: got %+v, want %+v", got, want)
			}
		})
	}
}

// TestTrackDedupWindow moves the fake clock past the TTL: the pair counts
// again after ttl + ttl/slices, and not before ttl.
func TestTrackDedupWindow(t *testing.T) {
	ts := newTestServer(t, "bloom")
	ts.createCampaign("c1")
	var res struct{ Status string }
	ts.do("POST", "/api/v1/impressions", track("c1", "u1")).want(t, 200)
	ts.clock.Add(time.Hour - time.Second)
	ts.do("POST", "/api/v1/impressions", track("c1", "u1")).want(t, 200).decode(t, &res)
	if res.Status != "duplicate" {
		t.Fatalf("repeat within the TTL: got %s, want duplicate", res.Status)
	}
	ts.clock.Add(10*time.Minute + 2*time.Second) // past ttl + ttl/6 since the first
	ts.do("POST", "/api/v1/impressions", track("c1", "u1")).want(t, 200).decode(t, &res)
	if res.Status != "counted" {
		t.Fatalf("repeat after ttl+ttl/slices: got %s, want counted", res.Status)
	}
}

func TestTrackErrors(t *testing.T) {
	ts := newTestServer(t, "exact")
	ts.do("POST", "/api/v1/campaigns", `{"id":"future","name":"Future","start_time":"`+rfc3339(testNow.Add(40*24*time.Hour))+`"}`).want(t, 201)
	ts.createCampaign("c1")
	long := strings.Repeat("x", 257)
	for _, tc := range []struct {
		name   string
		body   string
		status int
	}{
		{"malformed JSON", `{"campaign_id":"c1",`, 400},
		{"empty body", ``, 400},
		{"not an object", `["c1","u1"]`, 400},
		{"string body", `"c1"`, 400},
		{"user_id of wrong type", `{"campaign_id":"c1","user_id":42}`, 400},
		{"campaign_id of wrong type", `{"campaign_id":{"id":"c1"},"user_id":"u"}`, 400},
		{"ad_id of wrong type", `{"campaign_id":"c1","user_id":"u","ad_id":true}`, 400},
		{"timestamp of wrong type", `{"campaign_id":"c1","user_id":"u","timestamp":1700000000}`, 400},
		{"missing campaign_id", `{"user_id":"u"}`, 422},
		{"null campaign_id", `{"campaign_id":null,"user_id":"u"}`, 422},
		{"empty campaign_id", `{"campaign_id":"","user_id":"u"}`, 422},
		{"missing user_id", `{"campaign_id":"c1"}`, 422},
		{"empty user_id", `{"campaign_id":"c1","user_id":""}`, 422},
		{"user_id of 257 bytes", track("c1", long), 422},
		{"ad_id of 257 bytes", `{"campaign_id":"c1","user_id":"u","ad_id":"` + long + `"}`, 422},
		{"bad timestamp", `{"campaign_id":"c1","user_id":"u","timestamp":"` + testNow.Format(time.DateTime) + `"}`, 422},
		{"timestamp too far ahead", trackAt("c1", "u", testNow.Add(time.Minute+time.Second)), 422},
		{"timestamp before start", trackAt("future", "u", testNow), 422},
		{"now is before start", track("future", "u"), 422},
		{"unknown campaign", track("nope", "u"), 404},
		// Validation is judged before the campaign lookup.
		{"unknown campaign and missing user", `{"campaign_id":"nope"}`, 422},
		{"unknown campaign and bad timestamp", `{"campaign_id":"nope","user_id":"u","timestamp":"x"}`, 422},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts.do("POST", "/api/v1/impressions", tc.body).want(t, tc.status)
		})
	}
	// Nothing above counted, nor marked any pair as seen.
	if got := ts.stats("c1"); got.Total != 0 {
		t.Fatalf("stats after errors: got %+v, want zeros", got)
	}
	var res struct{ Status string }
	ts.do("POST", "/api/v1/impressions", track("c1", "u")).want(t, 200).decode(t, &res)
	if res.Status != "counted" {
		t.Fatalf("a pair seen only in rejected requests: got %s, want counted", res.Status)
	}
}

func TestTrackAccepts(t *testing.T) {
	ts := newTestServer(t, "exact")
	ts.createCampaign("c1")
	for i, body := range []string{
		`{"campaign_id":"c1","user_id":"a","ad_id":null,"timestamp":null}`,
		`{"campaign_id":"c1","user_id":"b","unknown":{"nested":[1,2,{"x":null}]},"n":1.5}`,
		track("c1", strings.Repeat("y", 256)),
		`{"campaign_id":"c1","user_id":"c","ad_id":"` + strings.Repeat("z", 256) + `"}`,
		trackAt("c1", "d", testNow.Add(time.Minute)),                                                                                        // exactly at the skew limit
		`{"campaign_id":"c1","user_id":"e","timestamp":"` + testNow.Add(-30*time.Second).Format("2006-01-02T15:04:05") + `.123456789Z"}`,    // fractions
		`{"campaign_id":"c1","user_id":"f","timestamp":"` + testNow.In(time.FixedZone("", 3600)).Format("2006-01-02T15:04:05-07:00") + `"}`, // offsets
		`{"campaign_id":"c1","user_id":"f2","timestamp":"` + testNow.Format("2006-01-02t15:04:05z") + `"}`,                                  // lower case t and z
		`{"campaign_id":"c1","user_id":"\u00e9t\u00e9"}`,                                                                                    // escapes
		`{"user_id":"ignored","campaign_id":"c1","user_id":"g"}`,                                                                            // last key wins
	} {
		var res struct{ Status string }
		ts.do("POST", "/api/v1/impressions", body).want(t, 200).decode(t, &res)
		if res.Status != "counted" {
			t.Fatalf("body %d %s: got %s, want counted", i, body, res.Status)
		}
	}
	var res struct{ Status string }
	ts.do("POST", "/api/v1/impressions", track("c1", "été")).want(t, 200).decode(t, &res)
	if res.Status != "duplicate" {
		t.Fatalf("escaped and raw UTF-8 ids must be the same user: got %s", res.Status)
	}
}

// TestStatsWindows places impressions by timestamp and moves the clock.
// Reach, aligned to 5 minutes, has its own test (TestReachWindows).
func TestStatsWindows(t *testing.T) {
	ts := newTestServer(t, "exact")
	ts.createCampaign("c1")
	for i, at := range []time.Time{
		testNow,                            // this minute
		testNow.Add(30 * time.Second),      // future within the skew: counted now
		testNow.Add(-30 * time.Minute),     // hour
		testNow.Add(-2 * time.Hour),        // day
		testNow.Add(-23 * time.Hour),       // day
		testNow.Add(-25 * time.Hour),       // total only
		testNow.Add(-300 * 24 * time.Hour), // total only
	} {
		ts.do("POST", "/api/v1/impressions", trackAt("c1", fmt.Sprint("u", i), at)).want(t, 200)
	}
	if got, want := statsOnly(ts.stats("c1")), (statsJSON{"c1", 3, 5, 7, windowJSON{}, nil}); got != want {
		t.Fatalf("stats: got %+v, want %+v", got, want)
	}
	ts.clock.Add(31 * time.Minute) // the -30m impression leaves the hour
	if got, want := statsOnly(ts.stats("c1")), (statsJSON{"c1", 2, 5, 7, windowJSON{}, nil}); got != want {
		t.Fatalf("31 minutes later: got %+v, want %+v", got, want)
	}
	ts.clock.Add(time.Hour) // everything leaves the hour, and the -23h impression the day
	if got, want := statsOnly(ts.stats("c1")), (statsJSON{"c1", 0, 4, 7, windowJSON{}, nil}); got != want {
		t.Fatalf("91 minutes later: got %+v, want %+v", got, want)
	}
	ts.clock.Add(22 * time.Hour) // only testNow's impressions stay in the day
	if got, want := statsOnly(ts.stats("c1")), (statsJSON{"c1", 0, 2, 7, windowJSON{}, nil}); got != want {
		t.Fatalf("a day later: got %+v, want %+v", got, want)
	}
}

func TestBatch(t *testing.T) {
	ts := newTestServer(t, "exact")
	ts.createCampaign("c1")
	ts.createCampaign("c2")
	body := `[` + strings.Join([]string{
		track("c1", "u1"),
		track("c1", "u1"), // repeat inside the batch: counts once
		track("c2", "u1"),
		track("nope", "u1"),
		`{"campaign_id":"c1"}`,
		trackAt("c1", "u2", testNow.Add(time.Hour)),
		`{"campaign_id":"c1","user_id":"u3","extra":[1]}`,
	}, ",") + `]`
	var got struct {
		Counted, Duplicates, Rejected int
		Errors                        []struct {
			Index int
			Error string
			Code  int
		}
	}
	r := ts.do("POST", "/api/v1/impressions/batch", body).want(t, 200)
	r.decode(t, &got)
	if got.Counted != 3 || got.Duplicates != 1 || got.Rejected != 3 || len(got.Errors) != 3 {
		t.Fatalf("batch result: got %s, want 3 counted, 1 duplicate, 3 rejected", r.body)
	}
	for i, want := range []struct{ index, code int }{{3, 404}, {4, 422}, {5, 422}} {
		if e := got.Errors[i]; e.Index != want.index || e.Code != want.code || e.Error == "" {
			t.Fatalf("errors[%d]: got %+v, want index %d code %d with a message", i, e, want.index, want.code)
		}
	}
	if s := ts.stats("c1"); s.Total != 2 {
		t.Fatalf("c1 total: got %d, want 2", s.Total)
	}
	if s := ts.stats("c2"); s.Total != 1 {
		t.Fatalf("c2 total: got %d, want 1", s.Total)
	}
	// A clean batch still lists errors, as an empty array.
	r = ts.do("POST", "/api/v1/impressions/batch", `[`+track("c2", "u9")+`]`).want(t, 200)
	if string(r.body) != `{"counted":1,"duplicates":0,"rejected":0,"errors":[]}` {
		t.Fatalf("clean batch: got %s", r.body)
	}
}

func TestBatchErrors(t *testing.T) {
	ts := newTestServer(t, "exact")
	ts.createCampaign("c1")
	good := track("c1", "u1")
	items := func(n int) string {
		var b strings.Builder
		b.WriteByte('[')
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"campaign_id":"c1","user_id":"x%d"}`, i)
		}
		b.WriteByte(']')
		return b.String()
	}
	for _, tc := range []struct {
		name   string
		body   string
		status int
	}{
		{"malformed JSON", `[` + good, 400},
		{"object, not array", good, 400},
		{"array of strings", `["c1"]`, 400},
		{"object then number", `[` + good + `,5]`, 400},
		{"object then null", `[` + good + `,null]`, 400},
		{"wrong type in last item", `[` + good + `,{"campaign_id":"c1","user_id":5}]`, 400},
		{"empty array", `[]`, 422},
		{"10001 items", items(10001), 422},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts.do("POST", "/api/v1/impressions/batch", tc.body).want(t, tc.status)
		})
	}
	if got := ts.stats("c1"); got.Total != 0 {
		t.Fatalf("rejected batches counted: %+v", got)
	}
	var res struct{ Counted int }
	ts.do("POST", "/api/v1/impressions/batch", items(10000)).want(t, 200).decode(t, &res)
	if res.Counted != 10000 {
		t.Fatalf("10000 items: counted %d, want 10000", res.Counted)
	}
}

func TestBodyTooLarge(t *testing.T) {
	ts := newTestServer(t, "exact", func(o *testOptions) { o.MaxBodySize = 1024 })
	ts.createCampaign("c1")
	big := `{"campaign_id":"c1","user_id":"u","pad":"` + strings.Repeat("p", 2000) + `"}`
	ts.do("POST", "/api/v1/impressions", big).want(t, 413)
	if got := ts.stats("c1"); got.Total != 0 {
		t.Fatalf("a 413 counted: %+v", got)
	}
}

// TestConcurrentTracking fires hundreds of goroutines at one server in exact
// mode, repeats mixed in and crossing each other: the totals must equal the
// number of distinct pairs exactly.
func TestConcurrentTracking(t *testing.T) {
	const goroutines, perG, users, campaigns = 200, 50, 300, 3
	ts := newTestServer(t, "exact")
	for c := 0; c < campaigns; c++ {
		ts.createCampaign(fmt.Sprint("c", c))
	}
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perG; i++ {
				n := (g*perG + i) * 7919 // spread, with many collisions
				c, u := fmt.Sprint("c", n%campaigns), fmt.Sprint("u", n%users)
				var r response
				if i%10 == 0 {
					r = ts.do("POST", "/api/v1/impressions/batch", "["+track(c, u)+","+track(c, u+"b")+"]")
				} else {
					r = ts.do("POST", "/api/v1/impressions", track(c, u))
				}
				if !r.ok(t, 200) {
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// Recompute the distinct pairs each campaign was sent.
	want := make([]map[string]bool, campaigns)
	for c := range want {
		want[c] = map[string]bool{}
	}
	for g := 0; g < goroutines; g++ {
		for i := 0; i < perG; i++ {
			n := (g*perG + i) * 7919
			c, u := n%campaigns, fmt.Sprint("u", n%users)
			want[c][u] = true
			if i%10 == 0 {
				want[c][u+"b"] = true
			}
		}
	}
	for c := 0; c < campaigns; c++ {
		id := fmt.Sprint("c", c)
		if got := ts.stats(id); got.Total != uint64(len(want[c])) || got.LastHour != got.Total {
			t.Errorf("%s: got %+v, want total and last_hour %d", id, got, len(want[c]))
		}
	}
}

// statsOnly is s without its reach.
func statsOnly(s statsJSON) statsJSON {
	s.Reach = nil
	return s
}
