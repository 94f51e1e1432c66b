package main

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

func burstConfig(t *testing.T, args ...string) *attackConfig {
	t.Helper()
	var sb strings.Builder
	c, err := parseAttackFlags(append([]string{"-target", "http://127.0.0.1:9"}, args...), &sb)
	if err != nil {
		t.Fatalf("%v: %v %s", args, err, sb.String())
	}
	return c
}

// TestBurstPhasesSendDistinctPairs sends every phase of a plan through its
// targeter and checks that each phase carries exactly its pairs, in the
// planned number of requests, and that no pair occurs twice in the run.
func TestBurstPhasesSendDistinctPairs(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		phases []plannedPhase
	}{
		// a steady phase, then three bursts; 777 is no multiple of the batch
		{[]string{"-campaigns", "3", "-batch", "100", "-burst", "777", "-bursts", "3", "-burst-gap", "10s", "-steady", "1000", "-steady-over", "5s"},
			[]plannedPhase{
				{name: "steady", first: 0, n: 1000, over: 5 * time.Second},
				{name: "burst1", first: 1000, n: 777, at: 5 * time.Second},
				{name: "burst2", first: 1777, n: 777, at: 15 * time.Second},
				{name: "burst3", first: 2554, n: 777, at: 25 * time.Second},
			}},
		// single impressions on one campaign
		{[]string{"-campaigns", "1", "-burst", "50", "-bursts", "2"},
			[]plannedPhase{{name: "burst1", n: 50}, {name: "burst2", first: 50, n: 50}}},
	} {
		cfg := burstConfig(t, tc.args...)
		plan := newBurstPlan(cfg)
		ids := []string{"c0", "c1", "c2"}[:cfg.campaigns]
		w := newWorkload(cfg.seed, ids, plan.users(len(ids)), 0, wlStart, 0)
		phases := plan.phases()
		if len(phases) != len(tc.phases) {
			t.Fatalf("%v: got %d phases, want %d", tc.args, len(phases), len(tc.phases))
		}
		seen := map[[2]string]bool{}
		for i, pp := range phases {
			if pp != tc.phases[i] {
				t.Fatalf("%v: phase %d is %+v, want %+v", tc.args, i, pp, tc.phases[i])
			}
			items := sendPhase(t, cfg, pp.phase(cfg, w), requests(pp.n, cfg.batch))
			if uint64(len(items)) != pp.n {
				t.Fatalf("%s: got %d items, want %d", pp.name, len(items), pp.n)
			}
			for _, it := range items {
				k := [2]string{it["campaign_id"], it["user_id"]}
				if seen[k] || it["timestamp"] != "" {
					t.Fatalf("%s: pair %v sent twice or with a timestamp", pp.name, it)
				}
				seen[k] = true
			}
		}
		for _, id := range ids {
			if !seen[[2]string{id, "u0"}] {
				t.Fatalf("%v: campaign %s unused", tc.args, id)
			}
		}
	}
}

// sendPhase calls the phase's targeter for its reqs requests, checks that
// there is no further one, and returns the items the bodies carry.
func sendPhase(t *testing.T, cfg *attackConfig, ph phase, reqs uint64) []map[string]string {
	t.Helper()
	var items []map[string]string
	for k := uint64(0); k < reqs; k++ {
		var tgt vegeta.Target
		if err := ph.tr(&tgt); err != nil {
			t.Fatalf("request %d of %d: %v", k, reqs, err)
		}
		if cfg.batch == 1 {
			var it map[string]string
			if err := json.Unmarshal(tgt.Body, &it); err != nil || !strings.HasSuffix(tgt.URL, "/api/v1/impressions?seq="+itoa(int(k))) {
				t.Fatalf("request %d: %s %s: %v", k, tgt.URL, tgt.Body, err)
			}
			items = append(items, it)
			continue
		}
		var batch []map[string]string
		if err := json.Unmarshal(tgt.Body, &batch); err != nil || !strings.HasSuffix(tgt.URL, "/batch?seq="+itoa(int(k))) {
			t.Fatalf("request %d: %s: %v", k, tgt.URL, err)
		}
		items = append(items, batch...)
	}
	var tgt vegeta.Target
	if err := ph.tr(&tgt); !errors.Is(err, vegeta.ErrNoTargets) {
		t.Fatalf("request past the last: got %v, want ErrNoTargets", err)
	}
	if _, stop := ph.pacer.Pace(time.Hour, reqs); !stop {
		t.Fatalf("the pacer does not stop after %d requests", reqs)
	}
	if _, stop := ph.pacer.Pace(0, reqs-1); stop {
		t.Fatalf("the pacer stops before request %d", reqs)
	}
	return items
}

func TestBurstRowArithmetic(t *testing.T) {
	for _, tc := range []struct {
		pairs, counted uint64
		fp             float64
		lost           int64
		share          float64
		allowed        uint64
		verdict        string
	}{
		{1_000_000, 815_707, 0.001, 184_293, 18.4293, 1000, "over"}, // the measured burst of capacity
		{200_000, 199_988, 0.001, 12, 0.006, 200, "ok"},             // 200000 × 0.001 is 200, not 201
		{200_000, 199_800, 0.001, 200, 0.1, 200, "ok"},              // at the bound
		{200_000, 199_799, 0.001, 201, 0.1005, 200, "over"},
		{1001, 1001, 0.001, 0, 0, 2, "ok"}, // rounded up
		{0, 0, 0.001, 0, 0, 0, "ok"},
		{100, 101, 0.001, -1, -1, 1, "ok"}, // an overcount: lost is negative
	} {
		r := burstRow{pairs: tc.pairs, counted: tc.counted}
		if r.lost() != tc.lost || math.Abs(r.share()-tc.share) > 1e-9 || r.allowed(tc.fp) != tc.allowed || r.verdict(tc.fp) != tc.verdict {
			t.Errorf("pairs %d counted %d fp %g: got lost %d share %v allowed %d %s, want %d %v %d %s",
				tc.pairs, tc.counted, tc.fp, r.lost(), r.share(), r.allowed(tc.fp), r.verdict(tc.fp), tc.lost, tc.share, tc.allowed, tc.verdict)
		}
	}
}

func TestNewBurstRow(t *testing.T) {
	pp := plannedPhase{name: "burst2", first: 5000, n: 2500}
	res := &attackResult{counted: 1400, okSeqs: []uint64{2, 0}, rejected: []uint64{7}} // request 1 failed
	res.metrics.Requests = 3
	r := newBurstRow(pp, res, 1000)
	// request 0 carries 1000 pairs, request 2 the last 500, one was rejected
	if r.pairs != 1499 || r.sent != 2500 || r.failed != 1 || r.rejected != 1 || r.counted != 1400 || r.lost() != 99 {
		t.Fatalf("got %+v, want 1499 pairs of 2500, 1 failed, 1 rejected, 1400 counted", r)
	}
	all := sumRows([]burstRow{
		{start: time.Second, took: 2 * time.Second, sent: 10, pairs: 10, counted: 9, statsCounted: 9, requests: 1},
		{start: 10 * time.Second, took: time.Second, sent: 20, pairs: 20, counted: 18, statsCounted: 18, requests: 2},
	})
	want := burstRow{name: "all", start: time.Second, took: 10 * time.Second, sent: 30, pairs: 30, counted: 27, statsCounted: 27, requests: 3}
	if all != want {
		t.Fatalf("sum: got %+v, want %+v", all, want)
	}
}

func TestBurstErr(t *testing.T) {
	ok := burstRow{name: "burst1", sent: 100, pairs: 100, counted: 90, statsCounted: 90, requests: 1}
	for _, tc := range []struct {
		row    burstRow
		phases int
		strict bool
		want   string // "" for no error
	}{
		{ok, 1, false, ""}, // an undercount is measured, not an error
		{ok, 1, true, "10 pairs not counted"},
		{ok, 2, false, "interrupted"},
		{burstRow{name: "b", sent: 100, pairs: 50, counted: 50, statsCounted: 50, requests: 2, failed: 1}, 1, false, "1 of 2 requests failed"},
		{burstRow{name: "b", sent: 100, pairs: 99, counted: 50, statsCounted: 50, requests: 1, rejected: 1}, 1, false, "1 impressions rejected"},
		{burstRow{name: "b", sent: 100, pairs: 100, counted: 90, statsCounted: 89, requests: 1}, 1, false, "responses counted 90, the stats totals grew by 89"},
	} {
		err := burstErr([]burstRow{tc.row}, tc.phases, tc.strict)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v, %d phases, strict %v: got %v, want %q", tc.row, tc.phases, tc.strict, err, tc.want)
		}
	}
}

func TestParseBurstFlags(t *testing.T) {
	c := burstConfig(t, "-burst", "1000", "-bursts", "3", "-burst-gap", "70s", "-fp", "0.01")
	if c.burst != 1000 || c.bursts != 3 || c.burstGap != 70*time.Second || c.fp != 0.01 {
		t.Fatalf("got %+v", c)
	}
	if c := burstConfig(t); c.burst != 0 || c.bursts != 1 || c.fp != 0.001 {
		t.Fatalf("defaults: got burst %d bursts %d fp %g, want 0, 1, 0.001", c.burst, c.bursts, c.fp)
	}
	var sb strings.Builder
	for _, args := range [][]string{
		{"-burst", "-1"}, {"-burst", "10", "-bursts", "0"}, {"-bursts", "2"}, {"-steady", "10"},
		{"-burst-gap", "1s"}, {"-burst", "10", "-burst-gap", "-1s"}, {"-burst", "10", "-steady", "5", "-steady-over", "0s"},
		{"-burst", "10", "-fp", "1"}, {"-burst", "10", "-fp", "-0.1"}, {"-burst", "1000000000", "-bursts", "9"},
	} {
		if _, err := parseAttackFlags(args, &sb); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}

func TestAlignedStart(t *testing.T) {
	now := time.Unix(1_800_000_003, 250_000_000)
	if got := alignedStart(now, 0); !got.Equal(now) {
		t.Fatalf("no alignment: got %s, want %s", got, now)
	}
	want := time.Unix(1_800_000_010, 0).Add(alignMargin)
	if got := alignedStart(now, 10*time.Second); !got.Equal(want) {
		t.Fatalf("10s: got %s, want %s", got, want)
	}
	// on a boundary: the next one, so a whole slice lies ahead
	if got := alignedStart(time.Unix(1_800_000_010, 0), 10*time.Second); !got.Equal(time.Unix(1_800_000_020, 0).Add(alignMargin)) {
		t.Fatalf("on a boundary: got %s", got)
	}
}
