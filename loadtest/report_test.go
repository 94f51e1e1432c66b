package main

import (
	"math"
	"strings"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

func TestUndercount(t *testing.T) {
	for _, tc := range []struct {
		expected, reported uint64
		want               float64
	}{
		{0, 0, 0},
		{1000, 1000, 0},
		{1000, 999, 0.1},
		{1000, 0, 100},
		{1000, 1010, -1}, // overcount
		{0, 5, -100},
	} {
		if got := undercount(tc.expected, tc.reported); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("undercount(%d, %d) = %v, want %v", tc.expected, tc.reported, got, tc.want)
		}
	}
	if got := perSecond(3000, 1500*time.Millisecond); got != 2000 {
		t.Errorf("perSecond: got %v, want 2000", got)
	}
	if got := perSecond(5, 0); got != 0 {
		t.Errorf("perSecond over nothing: got %v, want 0", got)
	}
}

func TestRecord(t *testing.T) {
	var res attackResult
	single := []*vegeta.Result{
		{URL: "http://x/api/v1/impressions?seq=4", Body: []byte(`{"status":"counted","message":"m"}`)},
		{URL: "http://x/api/v1/impressions?seq=9", Body: []byte(`{"status":"duplicate","message":"m"}`)},
	}
	for _, r := range single {
		if err := res.record(r, 1); err != nil {
			t.Fatal(err)
		}
	}
	if res.counted != 1 || res.dups != 1 || len(res.okSeqs) != 2 || res.okSeqs[1] != 9 {
		t.Fatalf("single: got %+v", res)
	}
	if err := res.record(&vegeta.Result{URL: "http://x/?seq=1", Body: []byte(`{}`)}, 1); err == nil {
		t.Fatal("an unexpected body must be an error")
	}
	batch := &vegeta.Result{URL: "http://x/api/v1/impressions/batch?seq=3", Body: []byte(
		`{"counted":5,"duplicates":2,"rejected":1,"errors":[{"index":7,"error":"campaign not found","code":404}]}`)}
	if err := res.record(batch, 10); err != nil {
		t.Fatal(err)
	}
	if res.counted != 6 || res.dups != 3 || len(res.rejected) != 1 || res.rejected[0] != 37 {
		t.Fatalf("batch: got counted %d dups %d rejected %v, want 6, 3, [37]", res.counted, res.dups, res.rejected)
	}
}

func TestStrictErr(t *testing.T) {
	ok := report{m: summary{requests: 10, success: 10}, expected: windows{5, 5, 5}, reported: windows{5, 5, 5}}
	if err := ok.strictErr(); err != nil {
		t.Fatalf("clean run: %v", err)
	}
	failed := ok
	failed.m.success = 9
	if err := failed.strictErr(); err == nil || !strings.Contains(err.Error(), "1 of 10 requests failed") {
		t.Fatalf("failed request: got %v", err)
	}
	under := ok
	under.reported.LastHour = 4
	if err := under.strictErr(); err == nil || !strings.Contains(err.Error(), "not exact") {
		t.Fatalf("undercount: got %v", err)
	}
}

func TestParseAttackFlags(t *testing.T) {
	var sb strings.Builder
	c, err := parseAttackFlags([]string{"-rate", "0", "-batch", "1000", "-target", "http://127.0.0.1:9/"}, &sb)
	if err != nil || c.rate != 0 || c.batch != 1000 || c.target != "http://127.0.0.1:9" {
		t.Fatalf("got %+v, %v", c, err)
	}
	for _, args := range [][]string{
		{"-batch", "0"}, {"-batch", "10001"}, {"-dup-ratio", "1.5"}, {"-users", "0"},
		{"-campaigns", "0"}, {"-duration", "0s"}, {"-rate", "-1"}, {"-nope"},
	} {
		if _, err := parseAttackFlags(args, &sb); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}
