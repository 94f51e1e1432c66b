package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

var freqWarmStart = time.Date(2026, 11, 26, 12, 0, 30, 0, time.UTC)

// testFreqWorkload has 4 campaigns, one unknown id and 5 users, every pair
// exposed (1 to 5 impressions), and a checker that saw every warm-up
// impression accepted.
func testFreqWorkload(t *testing.T) (*freqWorkload, *freqChecker) {
	t.Helper()
	w := newFreqWorkload(3, []string{"c0", "c1", "c2", "c3"}, []string{"x0"}, 5, 4, 1, freqCaps)
	all := make([]uint64, len(w.warmup))
	for n := range all {
		all[n] = uint64(n)
	}
	return w, newFreqChecker(w, all, freqWarmStart)
}

type freqRequestJSON struct {
	UserID      string   `json:"user_id"`
	CampaignIDs []string `json:"campaign_ids"`
}

func TestFreqWorkloadBodies(t *testing.T) {
	ids := make([]string, 50)
	for i := range ids {
		ids[i] = "camp" + strconv.Itoa(i)
	}
	for _, tc := range []struct {
		candidates int
		unknown    []string
	}{
		{50, nil},                    // every campaign, the default
		{7, []string{"nope", "no2"}}, // a subset, and ids never created
	} {
		a := newFreqWorkload(9, ids, tc.unknown, 200, tc.candidates, 0.3, freqCaps)
		b := newFreqWorkload(9, ids, tc.unknown, 200, tc.candidates, 0.3, freqCaps)
		other := newFreqWorkload(10, ids, tc.unknown, 200, tc.candidates, 0.3, freqCaps)
		sameAsOther, firsts := 0, map[string]bool{}
		for u := range 200 {
			if string(a.bodies[u]) != string(b.bodies[u]) {
				t.Fatalf("user %d: two workloads of one seed differ:\n%s\n%s", u, a.bodies[u], b.bodies[u])
			}
			if string(a.bodies[u]) == string(other.bodies[u]) {
				sameAsOther++
			}
			var req freqRequestJSON
			if err := json.Unmarshal(a.bodies[u], &req); err != nil {
				t.Fatalf("user %d: %v in %s", u, err, a.bodies[u])
			}
			want := make([]string, len(a.order[u]))
			for k, i := range a.order[u] {
				want[k] = a.id(i)
			}
			if req.UserID != "u"+strconv.Itoa(u) || !slices.Equal(req.CampaignIDs, want) {
				t.Fatalf("user %d: got %+v, want u%d with %v", u, req, u, want)
			}
			known, seen := 0, map[string]bool{}
			for _, id := range req.CampaignIDs {
				if seen[id] {
					t.Fatalf("user %d: %s twice", u, id)
				}
				seen[id] = true
				if strings.HasPrefix(id, "camp") {
					known++
				}
			}
			for _, id := range tc.unknown {
				if !seen[id] {
					t.Fatalf("user %d: unknown id %s missing", u, id)
				}
			}
			if known != tc.candidates || len(req.CampaignIDs) != tc.candidates+len(tc.unknown) || a.idsPerRequest() != len(req.CampaignIDs) {
				t.Fatalf("user %d: %d campaigns of %d ids, want %d and %d", u, known, len(req.CampaignIDs), tc.candidates, tc.candidates+len(tc.unknown))
			}
			firsts[req.CampaignIDs[0]] = true
			if len(a.bodies[u]) > a.maxBody {
				t.Fatalf("user %d: body of %d bytes above maxBody %d", u, len(a.bodies[u]), a.maxBody)
			}
		}
		// Shuffled: 200 users start with many different ids, and another
		// seed gives other orders.
		if len(firsts) < 5 || sameAsOther > 10 {
			t.Fatalf("candidates %d: %d different first ids over 200 users, %d bodies equal under another seed", tc.candidates, len(firsts), sameAsOther)
		}
	}
}

// TestFreqTimedPhaseTargets checks that request n names n and carries the
// body of its user.
func TestFreqTimedPhaseTargets(t *testing.T) {
	w, chk := testFreqWorkload(t)
	cfg := &attackConfig{target: "http://127.0.0.1:9", rate: 100, duration: time.Second}
	ph := w.timedPhase(cfg, chk)
	users := map[int]bool{}
	for n := range uint64(100) {
		var tgt vegeta.Target
		if err := ph.tr(&tgt); err != nil {
			t.Fatal(err)
		}
		if tgt.Method != http.MethodPost || tgt.URL != "http://127.0.0.1:9/api/v1/frequency?seq="+strconv.FormatUint(n, 10) ||
			string(tgt.Body) != string(w.bodies[w.userOf(n)]) {
			t.Fatalf("request %d: %s %s %s", n, tgt.Method, tgt.URL, tgt.Body)
		}
		users[w.userOf(n)] = true
	}
	if len(users) != w.users || ph.check == nil || ph.bodySize != w.maxBody {
		t.Fatalf("100 requests asked about %d of %d users; check set %t, bodySize %d", len(users), w.users, ph.check != nil, ph.bodySize)
	}
}

// TestFreqWarmup checks the warm-up plan: a pair is exposed with the
// requested probability (within 1 point over 100k pairs, 7 standard
// deviations), 1 to 5 times about equally often, and the warm-up phase
// sends each exposed pair exactly that often, then stops.
func TestFreqWarmup(t *testing.T) {
	ids := make([]string, 100)
	for i := range ids {
		ids[i] = "c" + strconv.Itoa(i)
	}
	w := newFreqWorkload(1, ids, nil, 1000, 100, 0.3, freqCaps)
	var byK [freqMaxExposures + 1]int
	for _, k := range w.planned {
		byK[k]++
	}
	if share := float64(len(w.planned)-byK[0]) / float64(len(w.planned)); math.Abs(share-0.3) > 0.01 || w.exposedPairs != len(w.planned)-byK[0] {
		t.Fatalf("exposed share %.4f (%d pairs), want 0.3", share, w.exposedPairs)
	}
	for k := 1; k <= freqMaxExposures; k++ {
		if share := float64(byK[k]) / float64(w.exposedPairs); math.Abs(share-0.2) > 0.01 {
			t.Errorf("%d exposures: share %.4f of exposed pairs, want 0.2", k, share)
		}
	}
	small, _ := testFreqWorkload(t)
	ph := small.warmupPhase(&attackConfig{target: "http://127.0.0.1:9"})
	sent := map[[2]string]uint8{}
	for n := range len(small.warmup) {
		var tgt vegeta.Target
		if err := ph.tr(&tgt); err != nil {
			t.Fatal(err)
		}
		var it map[string]string
		if err := json.Unmarshal(tgt.Body, &it); err != nil || !strings.HasSuffix(tgt.URL, "/api/v1/impressions?seq="+strconv.Itoa(n)) || len(it) != 2 {
			t.Fatalf("impression %d: %s %s: %v", n, tgt.URL, tgt.Body, err)
		}
		sent[[2]string{it["campaign_id"], it["user_id"]}]++
	}
	for p, k := range small.planned {
		pair := [2]string{small.campaigns[p%4], "u" + strconv.Itoa(p/4)}
		if sent[pair] != k || k < 1 || k > freqMaxExposures {
			t.Fatalf("pair %v: sent %d times, planned %d", pair, sent[pair], k)
		}
	}
	var tgt vegeta.Target
	if err := ph.tr(&tgt); !errors.Is(err, vegeta.ErrNoTargets) {
		t.Fatalf("past the last impression: got %v, want ErrNoTargets", err)
	}
	if _, stop := ph.pacer.Pace(time.Hour, uint64(len(small.warmup))); !stop {
		t.Fatal("the warm-up pacer does not stop after the last impression")
	}
}

type freqAnswerJSON struct {
	UserID    string         `json:"user_id"`
	Campaigns []freqItemJSON `json:"campaigns"`
}

type freqItemJSON struct {
	CampaignID string        `json:"campaign_id"`
	Allowed    *bool         `json:"allowed,omitempty"`
	Exposures  []freqExpJSON `json:"exposures,omitempty"`
	Error      string        `json:"error,omitempty"`
	Code       int           `json:"code,omitempty"`
}

type freqExpJSON struct {
	Window string `json:"window"`
	Count  uint64 `json:"count"`
	Max    uint64 `json:"max"`
}

// freqAnswer is a correct answer for user u asking about ids, where count
// gives each id's count, false for an id never created.
func freqAnswer(u string, ids []string, count func(id string) (uint64, bool)) freqAnswerJSON {
	a := freqAnswerJSON{UserID: u, Campaigns: []freqItemJSON{}}
	for _, id := range ids {
		n, ok := count(id)
		if !ok {
			a.Campaigns = append(a.Campaigns, freqItemJSON{CampaignID: id, Error: "campaign not found", Code: 404})
			continue
		}
		it := freqItemJSON{CampaignID: id}
		for _, cp := range freqCaps {
			it.Exposures = append(it.Exposures, freqExpJSON{cp.name, n, cp.max})
		}
		fixAllowed(&it)
		a.Campaigns = append(a.Campaigns, it)
	}
	return a
}

// fixAllowed sets allowed from the item's counts.
func fixAllowed(it *freqItemJSON) {
	ok := true
	for _, e := range it.Exposures {
		ok = ok && e.Count < e.Max
	}
	it.Allowed = &ok
}

// truthAnswer is the correct answer to request n of the test workload.
func truthAnswer(w *freqWorkload, chk *freqChecker, n uint64) freqAnswerJSON {
	u := w.userOf(n)
	ids := make([]string, len(w.order[u]))
	for k, i := range w.order[u] {
		ids[k] = w.id(i)
	}
	return freqAnswer("u"+strconv.Itoa(u), ids, func(id string) (uint64, bool) {
		c := slices.Index(w.campaigns, id)
		if c < 0 {
			return 0, false
		}
		return uint64(chk.exposures[u*len(w.campaigns)+c]), true
	})
}

// findItem finds a request and a created campaign's item in its answer
// whose tracked count satisfies ok.
func findItem(t *testing.T, w *freqWorkload, chk *freqChecker, ok func(tracked uint8) bool) (uint64, int) {
	t.Helper()
	for n := range uint64(1000) {
		u := w.userOf(n)
		for k, i := range w.order[u] {
			if int(i) < len(w.campaigns) && ok(chk.exposures[u*len(w.campaigns)+int(i)]) {
				return n, k
			}
		}
	}
	t.Fatal("no such item")
	return 0, 0
}

func TestFreqChecker(t *testing.T) {
	w, _ := testFreqWorkload(t)
	blocked := func(tracked uint8) bool { return tracked >= 3 }
	under := func(tracked uint8) bool { return tracked == 1 || tracked == 2 }
	for _, tc := range []struct {
		name   string
		pick   func(uint8) bool // which item the mutation is given
		mutate func(a *freqAnswerJSON, k int)
		sent   time.Duration // after the warm-up began; 0: a second
		want   freqMismatches
		over   uint64 // items above the truth, overBlock: of those not allowed
		block  uint64
	}{
		{name: "a correct answer, a 404 item for the unknown id", pick: blocked, mutate: func(*freqAnswerJSON, int) {}},
		{name: "the 1h count one below the truth", pick: blocked, mutate: func(a *freqAnswerJSON, k int) {
			a.Campaigns[k].Exposures[0].Count--
			fixAllowed(&a.Campaigns[k])
		}, want: freqMismatches{undercount: 1}},
		{name: "allowed though over the 1h cap", pick: blocked, mutate: func(a *freqAnswerJSON, k int) {
			yes := true
			a.Campaigns[k].Allowed = &yes
		}, want: freqMismatches{allowed: 1}},
		{name: "not allowed though under every cap", pick: under, mutate: func(a *freqAnswerJSON, k int) {
			no := false
			a.Campaigns[k].Allowed = &no
		}, want: freqMismatches{allowed: 1}},
		{name: "two items swapped", pick: blocked, mutate: func(a *freqAnswerJSON, k int) {
			j := (k + 1) % len(a.Campaigns)
			a.Campaigns[k], a.Campaigns[j] = a.Campaigns[j], a.Campaigns[k]
		}, want: freqMismatches{order: 2}},
		{name: "the last item missing", pick: blocked, mutate: func(a *freqAnswerJSON, k int) {
			a.Campaigns = a.Campaigns[:len(a.Campaigns)-1]
		}, want: freqMismatches{length: 1}},
		{name: "an error for a created campaign", pick: blocked, mutate: func(a *freqAnswerJSON, k int) {
			a.Campaigns[k] = freqItemJSON{CampaignID: a.Campaigns[k].CampaignID, Error: "campaign not found", Code: 404}
		}, want: freqMismatches{errorItem: 1}},
		{name: "the unknown id answered as a campaign", pick: blocked, mutate: func(a *freqAnswerJSON, k int) {
			for i, it := range a.Campaigns {
				if it.Code == 404 {
					a.Campaigns[i] = freqAnswer("", []string{it.CampaignID}, func(string) (uint64, bool) { return 0, true }).Campaigns[0]
				}
			}
		}, want: freqMismatches{errorItem: 1}},
		{name: "another user", pick: blocked, mutate: func(a *freqAnswerJSON, k int) { a.UserID = "someone" },
			want: freqMismatches{user: 1}},
		{name: "an overcount blocking a user under every cap is allowed", pick: under, mutate: func(a *freqAnswerJSON, k int) {
			a.Campaigns[k].Exposures[0].Count = 7
			fixAllowed(&a.Campaigns[k])
		}, over: 1, block: 1},
		{name: "windows spelt otherwise, in another order", pick: blocked, mutate: func(a *freqAnswerJSON, k int) {
			e := a.Campaigns[k].Exposures
			e[0].Window, e[1].Window = "24h0m0s", "1h0m0s"
			e[0].Max, e[1].Max = e[1].Max, e[0].Max
		}},
		{name: "another max", pick: blocked, mutate: func(a *freqAnswerJSON, k int) { a.Campaigns[k].Exposures[1].Max = 11 },
			want: freqMismatches{caps: 1}},
		{name: "a cap missing", pick: blocked, mutate: func(a *freqAnswerJSON, k int) {
			a.Campaigns[k].Exposures = a.Campaigns[k].Exposures[:1]
		}, want: freqMismatches{caps: 1}},
		{name: "allowed missing", pick: blocked, mutate: func(a *freqAnswerJSON, k int) { a.Campaigns[k].Allowed = nil },
			want: freqMismatches{malformed: 1}},
		{name: "1h count 0 two hours after the warm-up", pick: blocked, sent: 2 * time.Hour, mutate: func(a *freqAnswerJSON, k int) {
			a.Campaigns[k].Exposures[0].Count = 0
			fixAllowed(&a.Campaigns[k])
		}},
		{name: "24h count 0 two hours after the warm-up", pick: blocked, sent: 2 * time.Hour, mutate: func(a *freqAnswerJSON, k int) {
			a.Campaigns[k].Exposures[1].Count = 0
		}, want: freqMismatches{undercount: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, chk := testFreqWorkload(t)
			n, k := findItem(t, w, chk, tc.pick)
			a := truthAnswer(w, chk, n)
			tc.mutate(&a, k)
			body, err := json.Marshal(a)
			if err != nil {
				t.Fatal(err)
			}
			sent := cmp.Or(tc.sent, time.Second)
			r := &vegeta.Result{Code: 200, URL: "http://x/api/v1/frequency?seq=" + strconv.FormatUint(n, 10), Body: body, Timestamp: freqWarmStart.Add(sent)}
			passed := chk.check(r)
			if chk.bad != tc.want || passed != (tc.want == freqMismatches{}) || chk.tally.over != tc.over || chk.tally.overBlock != tc.block {
				t.Fatalf("got %+v (passed %t, over %d, blocked %d), want %+v, over %d, blocked %d; samples %q\n%s",
					chk.bad, passed, chk.tally.over, chk.tally.overBlock, tc.want, tc.over, tc.block, chk.samples, body)
			}
			if tc.want.errorItem == 0 && tc.want.length == 0 && tc.want.order == 0 && chk.tally.unknown != 1 {
				t.Fatalf("unknown ids answered 404: got %d, want 1", chk.tally.unknown)
			}
			if chk.answers != 1 || chk.tally.items != uint64(min(len(a.Campaigns), 5)) {
				t.Fatalf("tallies: got answers %d, items %d, want 1 and %d", chk.answers, chk.tally.items, min(len(a.Campaigns), 5))
			}
		})
	}
}

// TestFreqCheckerRepeats checks that an answer byte-identical to the
// user's last one that passed, under the same certain caps, passes with
// the same tallies without a parse, and that nothing else skips the parse:
// a failed answer, another body, another set of certain caps.
func TestFreqCheckerRepeats(t *testing.T) {
	w, chk := testFreqWorkload(t)
	n, k := findItem(t, w, chk, func(tracked uint8) bool { return tracked >= 1 })
	good := truthAnswer(w, chk, n)
	bad := truthAnswer(w, chk, n)
	bad.Campaigns[k].Exposures[1].Count = 0
	other := truthAnswer(w, chk, n)
	other.Campaigns[k].Exposures[1].Count = 9 // an overcount, still allowed by the contract
	send := func(a freqAnswerJSON, after time.Duration) bool {
		body, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		return chk.check(&vegeta.Result{Code: 200, URL: "http://x/?seq=" + strconv.FormatUint(n, 10), Body: body, Timestamp: freqWarmStart.Add(after)})
	}
	for i, step := range []struct {
		a           freqAnswerJSON
		after       time.Duration
		pass        bool
		full, under uint64 // after the step
	}{
		{good, time.Second, true, 1, 0},
		{good, 2 * time.Second, true, 1, 0}, // a repeat
		{bad, 3 * time.Second, false, 2, 1},
		{bad, 4 * time.Second, false, 3, 2}, // a failure is never kept
		{good, 5 * time.Second, true, 3, 2}, // the good one still is
		{other, 6 * time.Second, true, 4, 2},
		{other, 7 * time.Second, true, 4, 2},
		{other, 2 * time.Hour, true, 5, 2}, // the 1h cap no longer certain
		{other, 3 * time.Hour, true, 5, 2},
	} {
		if got := send(step.a, step.after); got != step.pass || chk.full != step.full || chk.bad.undercount != step.under {
			t.Fatalf("step %d: passed %t, parsed %d answers, %d undercounts; want %t, %d, %d", i, got, chk.full, chk.bad.undercount, step.pass, step.full, step.under)
		}
	}
	// Every answer adds its items, a repeat as much as a parse: 5 ids, 4 of
	// them created campaigns and allowed or not, one unknown.
	if want := (freqTally{items: 45, unknown: 9, over: 4}); chk.answers != 9 || chk.tally.items != want.items ||
		chk.tally.unknown != want.unknown || chk.tally.allowed+chk.tally.blocked != 36 || chk.tally.over != want.over {
		t.Fatalf("tallies %+v of %d answers, want 9 answers, %+v with 36 allowed or not", chk.tally, chk.answers, want)
	}
}

func TestFreqCheckerRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    vegeta.Result
		want freqMismatches
	}{
		// a failed request is a failure, not a mismatch: the status codes show it
		{"503", vegeta.Result{Code: 503, URL: "http://x/?seq=1", Body: []byte(`{"error":"busy"}`)}, freqMismatches{}},
		{"not JSON", vegeta.Result{Code: 200, URL: "http://x/?seq=1", Body: []byte(`{"user_id":`)}, freqMismatches{malformed: 1}},
		{"no campaigns", vegeta.Result{Code: 200, URL: "http://x/?seq=1", Body: []byte(`{"user_id":"nobody"}`)}, freqMismatches{malformed: 1, user: 1}},
		{"campaigns no array", vegeta.Result{Code: 200, URL: "http://x/?seq=1", Body: []byte(`{"user_id":"nobody","campaigns":{}}`)}, freqMismatches{malformed: 1, user: 1}},
		{"no seq", vegeta.Result{Code: 200, URL: "http://x/", Body: []byte(`{}`)}, freqMismatches{malformed: 1}},
	} {
		_, chk := testFreqWorkload(t)
		if chk.check(&tc.r) || chk.bad != tc.want {
			t.Errorf("%s: got %+v, want %+v and a failure", tc.name, chk.bad, tc.want)
		}
	}
}

func TestParseFrequencyFlags(t *testing.T) {
	var sb strings.Builder
	c, err := parseAttackFlags([]string{"-workload", "frequency"}, &sb)
	if err != nil || c.campaigns != 100 || c.users != 1000 || c.candidates != 100 || !strings.Contains(c.campaignFields, `"frequency_caps":[{"max":3,"window":"1h"},{"max":10,"window":"24h"}]`) {
		t.Fatalf("defaults: got %+v, %v", c, err)
	}
	c, err = parseAttackFlags([]string{"-workload", "frequency", "-campaigns", "7", "-candidates", "3", "-unknown", "2"}, &sb)
	if err != nil || c.campaigns != 7 || c.candidates != 3 || c.unknown != 2 {
		t.Fatalf("got %+v, %v", c, err)
	}
	c, err = parseAttackFlags(nil, &sb)
	if err != nil || c.workload != workloadImpressions || c.campaigns != 10 || c.users != 100000 || c.campaignFields != "" {
		t.Fatalf("the impressions workload changed: got %+v, %v", c, err)
	}
	for _, args := range [][]string{
		{"-workload", "nope"},
		{"-candidates", "5"}, // frequency flags need the workload
		{"-workload", "frequency", "-candidates", "101"},
		{"-workload", "frequency", "-unknown", "901"},
		{"-workload", "frequency", "-unknown", "-1"},
		{"-workload", "frequency", "-exposed", "1.5"},
		{"-workload", "frequency", "-batch", "10"},
		{"-workload", "frequency", "-burst", "10"},
		{"-workload", "frequency", "-users", "100000"}, // 10M pairs
	} {
		if _, err := parseAttackFlags(args, &sb); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}

// fakeFrequencyServer is a small impressiond with frequency caps: it counts
// every impression of a pair, and its answers take lose from every count
// it reports (a broken server when lose > 0). It is safe for concurrent use.
type fakeFrequencyServer struct {
	lose uint64
	mu   sync.Mutex // guards caps and counts
	caps map[string]int
	// counts[campaign+"/"+user] is the impressions tracked of the pair
	counts map[string]uint64
}

func (s *fakeFrequencyServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.URL.Path {
	case "/api/v1/campaigns":
		var c struct {
			ID   string
			Caps []struct {
				Max    uint64
				Window string
			} `json:"frequency_caps"`
		}
		if json.NewDecoder(r.Body).Decode(&c) != nil || len(c.Caps) != len(freqCaps) {
			http.Error(w, `{"error":"bad campaign"}`, http.StatusUnprocessableEntity)
			return
		}
		s.caps[c.ID] = len(c.Caps)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{}`)
	case "/api/v1/impressions":
		var it struct {
			CampaignID string `json:"campaign_id"`
			UserID     string `json:"user_id"`
		}
		if json.NewDecoder(r.Body).Decode(&it) != nil {
			http.Error(w, `{"error":"bad impression"}`, http.StatusBadRequest)
			return
		}
		key := it.CampaignID + "/" + it.UserID
		s.counts[key]++
		if s.counts[key] == 1 {
			io.WriteString(w, `{"status":"counted","message":"m"}`)
		} else {
			io.WriteString(w, `{"status":"duplicate","message":"m"}`)
		}
	case "/api/v1/frequency":
		var req struct {
			UserID      string   `json:"user_id"`
			CampaignIDs []string `json:"campaign_ids"`
		}
		if json.NewDecoder(r.Body).Decode(&req) != nil {
			http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
			return
		}
		json.NewEncoder(w).Encode(freqAnswer(req.UserID, req.CampaignIDs, func(id string) (uint64, bool) {
			if _, ok := s.caps[id]; !ok {
				return 0, false
			}
			n := s.counts[id+"/"+req.UserID]
			return n - min(n, s.lose), true
		}))
	default:
		http.NotFound(w, r)
	}
}

// TestRunFrequency runs the whole workload against fake servers on
// httptest's loopback listeners: a correct one passes -strict, one that
// undercounts fails it. The checks count what was answered, whatever the
// number of requests the short run sends.
func TestRunFrequency(t *testing.T) {
	for _, lose := range []uint64{0, 1} {
		srv := &fakeFrequencyServer{lose: lose, caps: map[string]int{}, counts: map[string]uint64{}}
		ts := httptest.NewServer(srv)
		var out strings.Builder
		err := runAttack([]string{"-workload", "frequency", "-target", ts.URL, "-campaigns", "5", "-users", "20", "-exposed", "0.5",
			"-unknown", "1", "-rate", "200", "-duration", "200ms", "-connections", "4", "-workers", "4", "-out", t.TempDir(), "-strict"}, &out, io.Discard)
		ts.Close()
		report := out.String()
		t.Logf("lose %d: %v%s", lose, err, report)
		if !strings.Contains(report, "impressiond frequency load test") || !regexp.MustCompile(`(?m)^latency +p50 .* p99 `).MatchString(report) {
			t.Fatalf("lose %d: no report:\n%s", lose, report)
		}
		if lose == 0 && (err != nil || !regexp.MustCompile(`(?m)^mismatches +0:`).MatchString(report)) {
			t.Fatalf("a correct server: %v\n%s", err, report)
		}
		if lose == 1 && (err == nil || !strings.Contains(err.Error(), "mismatches") || strings.Contains(report, "undercount 0,")) {
			t.Fatalf("an undercounting server: %v\n%s", err, report)
		}
	}
}
