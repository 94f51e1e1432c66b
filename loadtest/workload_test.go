package main

import (
	"encoding/json"
	"math"
	"testing"
	"time"
)

var wlStart = time.Date(2026, 11, 26, 12, 0, 30, 0, time.UTC)

func testWorkload(dupRatio float64, spread time.Duration) *workload {
	return newWorkload(7, []string{"c0", "c1", "c2"}, 1000, dupRatio, wlStart, spread)
}

func TestWorkloadIsDeterministic(t *testing.T) {
	a, b := testWorkload(0.3, time.Hour), testWorkload(0.3, time.Hour)
	for j := uint64(0); j < 10000; j++ {
		if string(a.appendItem(nil, j)) != string(b.appendItem(nil, j)) {
			t.Fatalf("item %d differs between two workloads of the same seed", j)
		}
	}
	other := newWorkload(8, []string{"c0", "c1", "c2"}, 1000, 0.3, wlStart, time.Hour)
	same := 0
	for j := uint64(1); j < 1000; j++ {
		if string(a.appendItem(nil, j)) == string(other.appendItem(nil, j)) {
			same++
		}
	}
	if same > 900 {
		t.Fatalf("seeds 7 and 8 gave %d identical items of 999", same)
	}
}

// TestWorkloadDupRatio checks that the share of items repeating an
// earlier pair is the requested ratio, within 1 point over 200k items
// (the binomial standard deviation is 0.1 point).
func TestWorkloadDupRatio(t *testing.T) {
	for _, ratio := range []float64{0, 0.2, 0.5, 1} {
		w := newWorkload(1, []string{"a", "b"}, 1_000_000, ratio, wlStart, 0)
		seen := map[[2]int]bool{}
		repeats := 0
		const n = 200_000
		for j := uint64(0); j < n; j++ {
			c, u := w.pair(j)
			if c < 0 || c >= 2 || u < 0 || u >= 1_000_000 {
				t.Fatalf("item %d: pair (%d, %d) out of range", j, c, u)
			}
			if seen[[2]int{c, u}] {
				repeats++
			}
			seen[[2]int{c, u}] = true
		}
		got := float64(repeats) / n
		want := ratio
		if ratio == 1 {
			want = float64(n-1) / n // the first item has nothing to repeat
		}
		if math.Abs(got-want) > 0.01 {
			t.Errorf("dup-ratio %.1f: measured %.4f", ratio, got)
		}
	}
}

func TestWorkloadItems(t *testing.T) {
	w := testWorkload(0.2, 2*time.Hour)
	var batch []map[string]string
	if err := json.Unmarshal(w.appendBatch(nil, 100, 50), &batch); err != nil || len(batch) != 50 {
		t.Fatalf("batch of 50: %d items, err %v", len(batch), err)
	}
	for i, item := range batch {
		j := uint64(100 + i)
		c, u := w.pair(j)
		if item["campaign_id"] != w.campaigns[c] || item["user_id"] != "u"+itoa(u) {
			t.Fatalf("item %d: got %v, want campaign %s user u%d", j, item, w.campaigns[c], u)
		}
		ts, err := time.Parse(time.RFC3339, item["timestamp"])
		if err != nil {
			t.Fatalf("item %d: timestamp %q: %v", j, item["timestamp"], err)
		}
		if !ts.Equal(w.eventTime(c, u).Truncate(time.Second)) || ts.After(wlStart) || !ts.After(wlStart.Add(-2*time.Hour)) {
			t.Fatalf("item %d: timestamp %s outside (start-2h, start] or not the pair's", j, ts)
		}
	}
	if got := string(testWorkload(0, 0).appendItem(nil, 4)); got != `{"campaign_id":"c1","user_id":"u1"}` {
		t.Fatalf("item without spread: %s", got)
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestWorkloadStampsMatchFormat(t *testing.T) {
	for _, spread := range []time.Duration{time.Hour, 48 * time.Hour} { // cached, not cached
		w := testWorkload(0, spread)
		for j := uint64(0); j < 500; j++ {
			c, u := w.pair(j)
			want := `{"campaign_id":"` + w.campaigns[c] + `","user_id":"u` + itoa(u) + `","timestamp":"` + w.eventTime(c, u).UTC().Format(time.RFC3339) + `"}`
			if got := string(w.appendItem(nil, j)); got != want {
				t.Fatalf("spread %s item %d: got %s, want %s", spread, j, got, want)
			}
		}
	}
}

func BenchmarkAppendBatch(b *testing.B) {
	w := newWorkload(1, []string{"c0", "c1", "c2", "c3"}, 1_000_000, 0.2, wlStart, 2*time.Hour)
	buf := make([]byte, 0, 128<<10)
	b.ReportAllocs()
	n := uint64(0)
	for b.Loop() {
		buf = w.appendBatch(buf[:0], n, 1000)
		n += 1000
	}
}
