package api

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/impressiond/impressiond/sketch"
)

// boundedExact returns an option giving the server an exact window of at
// most max pairs.
func boundedExact(t testing.TB, max int) func(*testOptions) {
	return func(o *testOptions) {
		d, err := sketch.NewExact(sketch.Options{TTL: time.Hour, Slices: 6, MaxPairs: max})
		if err != nil {
			t.Fatal(err)
		}
		o.Dedup = d
	}
}

// boundedServer serves a server whose fake clock starts on a slice
// boundary (TTL/6 = 10m), so the Retry-After of a window filled at the
// start is known, with an exact window of at most max pairs and one
// campaign, c1.
func boundedServer(t *testing.T, max int, opts ...func(*testOptions)) *testServer {
	t.Helper()
	clock := &fakeClock{t: testNow.Truncate(10 * time.Minute)}
	ts := newTestServer(t, "exact", append([]func(*testOptions){boundedExact(t, max), func(o *testOptions) { o.Now = clock.Now }}, opts...)...)
	ts.clock = clock
	ts.createCampaign("c1")
	return ts
}

type errorJSON struct {
	Error string
	Code  int
}

// TestTrackDedupLimit: at -dedup-max-pairs a new pair gets 503 with a
// Retry-After and the JSON error, and is not counted; repeats are still
// duplicates; once the window's oldest slice expires, the refused pair is
// counted.
func TestTrackDedupLimit(t *testing.T) {
	memoryOnly(t, "-dedup-max-pairs bounds the in-process exact window only")
	const max = 3
	ts := boundedServer(t, max)
	var res struct{ Status string }
	for i := range max {
		ts.do("POST", "/api/v1/impressions", track("c1", fmt.Sprint("u", i))).want(t, 200).decode(t, &res)
		if res.Status != "counted" {
			t.Fatalf("user %d below the bound: got %s, want counted", i, res.Status)
		}
	}
	ts.clock.Add(5 * time.Minute)
	for _, tc := range []struct {
		name   string
		user   string
		status int
		want   string // status of a 200, or the error's text
	}{
		{"new pair at the bound", "new", 503, "dedup limit"},
		{"repeat at the bound", "u0", 200, "duplicate"},
		{"new pair again", "new", 503, "dedup limit"},
		{"last repeat", "u2", 200, "duplicate"},
	} {
		r := ts.do("POST", "/api/v1/impressions", track("c1", tc.user)).want(t, tc.status)
		if tc.status == 200 {
			r.decode(t, &res)
			if res.Status != tc.want {
				t.Fatalf("%s: got %s, want %s", tc.name, res.Status, tc.want)
			}
			continue
		}
		var e errorJSON
		r.decode(t, &e)
		if !strings.Contains(e.Error, tc.want) || e.Code != 503 {
			t.Fatalf("%s: body %s, want an error naming %q with code 503", tc.name, r.body, tc.want)
		}
		// The window was filled at the start of a slice, 5m ago; it
		// frees room when that slice leaves, 7 slices after it began.
		if got, want := r.header["Retry-After"], strconv.Itoa(int((70*time.Minute-5*time.Minute)/time.Second)); got != want {
			t.Fatalf("%s: Retry-After %q, want %q", tc.name, got, want)
		}
	}
	if got, want := ts.stats("c1").Total, uint64(max); got != want {
		t.Fatalf("total at the bound: got %d, want %d", got, want)
	}
	ts.clock.Add(65 * time.Minute) // the first slice has left the window
	ts.do("POST", "/api/v1/impressions", track("c1", "new")).want(t, 200).decode(t, &res)
	if res.Status != "counted" {
		t.Fatalf("refused pair once room is free: got %s, want counted", res.Status)
	}
	ts.do("POST", "/api/v1/impressions", track("c1", "new")).want(t, 200).decode(t, &res)
	if res.Status != "duplicate" {
		t.Fatalf("repeat of the pair counted late: got %s, want duplicate", res.Status)
	}
	if got, want := ts.stats("c1").Total, uint64(max+1); got != want {
		t.Fatalf("total: got %d, want %d", got, want)
	}
	// Idle shards rotate on the server's 1 s tick; do it now, at the
	// test's clock, so the gauge does not depend on whether it fired.
	ts.dedup.Advance(ts.clock.Now())
	m := scrape(t, ts)
	for _, want := range []string{
		`impressiond_impressions_total{result="dedup_limit"} 2`,
		`impressiond_impressions_total{result="counted"} 4`,
		`impressiond_impressions_total{result="rejected"} 0`,
		`impressiond_http_requests_total{method="POST",route="/api/v1/impressions",code="5xx"} 2`,
		`impressiond_dedup_pairs 1`,
		fmt.Sprintf(`impressiond_dedup_max_pairs %d`, max),
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestBatchDedupLimit: in a batch, items of new pairs beyond the bound are
// listed in errors with code 503 and counted in rejected, the others are
// processed, and the response carries Retry-After.
func TestBatchDedupLimit(t *testing.T) {
	memoryOnly(t, "-dedup-max-pairs bounds the in-process exact window only")
	ts := boundedServer(t, 2)
	ts.do("POST", "/api/v1/impressions", track("c1", "old")).want(t, 200)
	batch := "[" + strings.Join([]string{
		track("c1", "a"),       // 0: counted, the window is full
		track("c1", "b"),       // 1: refused
		track("c1", "old"),     // 2: duplicate
		track("nope", "x"),     // 3: unknown campaign
		track("c1", "a"),       // 4: duplicate
		track("c1", "c"),       // 5: refused
		`{"campaign_id":"c1"}`, // 6: invalid
	}, ",") + "]"
	r := ts.do("POST", "/api/v1/impressions/batch", batch).want(t, 200)
	var res struct {
		Counted, Duplicates, Rejected int
		Errors                        []struct {
			Index, Code int
			Error       string
		}
	}
	r.decode(t, &res)
	if res.Counted != 1 || res.Duplicates != 2 || res.Rejected != 4 {
		t.Fatalf("tallies: got %+v, want counted 1, duplicates 2, rejected 4", res)
	}
	want := []struct{ index, code int }{{1, 503}, {3, 404}, {5, 503}, {6, 422}}
	if len(res.Errors) != len(want) {
		t.Fatalf("errors: got %+v, want indexes and codes %v", res.Errors, want)
	}
	for i, w := range want {
		e := res.Errors[i]
		if e.Index != w.index || e.Code != w.code || (w.code == 503 && !strings.Contains(e.Error, "dedup limit")) {
			t.Fatalf("error %d: got %+v, want index %d code %d", i, e, w.index, w.code)
		}
	}
	if got := r.header["Retry-After"]; got != strconv.Itoa(70*60) {
		t.Fatalf("Retry-After: got %q, want %d", got, 70*60)
	}
	if got := ts.stats("c1").Total; got != 2 {
		t.Fatalf("total: got %d, want 2", got)
	}
	// Idle shards rotate on the server's 1 s tick; do it now, at the
	// test's clock, so the gauge does not depend on whether it fired.
	ts.dedup.Advance(ts.clock.Now())
	m := scrape(t, ts)
	for _, want := range []string{
		`impressiond_impressions_total{result="dedup_limit"} 2`,
		`impressiond_impressions_total{result="rejected"} 2`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// No refusal, no Retry-After.
	r = ts.do("POST", "/api/v1/impressions/batch", "["+track("c1", "a")+"]").want(t, 200)
	if got, ok := r.header["Retry-After"]; ok {
		t.Fatalf("Retry-After on a batch without refusals: %q", got)
	}
}

// TestDedupLimitNotLogged: a pair refused at the bound leaves no trace in
// the write-ahead log: after a restart it is still new, and it is counted
// once room frees up; the restored pairs count against the bound.
func TestDedupLimitNotLogged(t *testing.T) {
	memoryOnly(t, "the write-ahead log and -dedup-max-pairs are in-process only")
	dir := t.TempDir()
	clock := &fakeClock{t: testNow.Truncate(10 * time.Minute)}
	durable := func() func(*testOptions) {
		return func(o *testOptions) {
			o.DataDir = dir
			o.SnapshotInterval = time.Hour
			o.Now = clock.Now
		}
	}
	ts := boundedServer(t, 2, durable())
	ts.do("POST", "/api/v1/impressions", track("c1", "u0")).want(t, 200)
	ts.do("POST", "/api/v1/impressions/batch", "["+track("c1", "u1")+","+track("c1", "refused")+"]").want(t, 200)
	ts.do("POST", "/api/v1/impressions", track("c1", "refused")).want(t, 503)
	if err := ts.srv.Close(); err != nil {
		t.Fatal(err)
	}

	ts2 := newTestServer(t, "exact", boundedExact(t, 2), durable())
	ts2.clock = clock
	if got := ts2.stats("c1").Total; got != 2 {
		t.Fatalf("total after restart: got %d, want 2", got)
	}
	ts2.do("POST", "/api/v1/impressions", track("c1", "refused")).want(t, 503)
	var res struct{ Status string }
	ts2.do("POST", "/api/v1/impressions", track("c1", "u1")).want(t, 200).decode(t, &res)
	if res.Status != "duplicate" {
		t.Fatalf("restored pair: got %s, want duplicate", res.Status)
	}
	clock.Add(70 * time.Minute)
	ts2.do("POST", "/api/v1/impressions", track("c1", "refused")).want(t, 200).decode(t, &res)
	if res.Status != "counted" {
		t.Fatalf("refused pair after the window: got %s, want counted", res.Status)
	}
	if got := ts2.stats("c1").Total; got != 3 {
		t.Fatalf("total: got %d, want 3", got)
	}
}
