package redisstore

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/impressiond/impressiond/internal/redistest"
	"github.com/impressiond/impressiond/sketch"
)

// TestEarlierCampaignLifecycle: a campaign an earlier version wrote (a
// "<start> <name>" record, no def key, unprefixed keys) is generation 0:
// tracked, changed (a stale version is refused) and deleted (its keys
// go, and its version stays refused).
func TestEarlierCampaignLifecycle(t *testing.T) {
	srv := redistest.Start(t)
	s := openTest(t, srv, "exact", time.Hour)
	cl, err := s.conn()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := cl.Do(ctx, cl.B().Hset().Key(campaignsKey).FieldValue().FieldValue("old", "1767225600000000000 Old").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	c, ok, err := s.GetCampaign("old")
	if err != nil || !ok || c.Gen != 0 || c.Ver != 0 || c.Name != "Old" {
		t.Fatalf("GetCampaign = %+v, %v, %v", c, ok, err)
	}
	v0 := Ref("old", 0, 0)
	if !track(t, s, Item{v0, []byte("u"), 1, 1, nil})[0] {
		t.Fatal("not counted")
	}
	if _, total, _ := s.Minutes("old", 1, 1); total != 1 {
		t.Fatalf("an earlier campaign's keys keep their names: total %d", total)
	}
	if got := frequency(t, s, "u", query(v0, time.Hour)); got[0][0] != 1 {
		t.Fatalf("exposures of an earlier campaign: %v, want [[1]]", got)
	}
	if keys := redisKeys(t, s, "imp:{old}:fq:*"); len(keys) != 1 {
		t.Fatalf("an earlier campaign's exposure keys: %v, want one, unprefixed", keys)
	}
	n, ok, err := s.UpdateCampaign("old", func(c Campaign) (Campaign, error) { c.Name = "New"; return c, nil })
	if err != nil || !ok || n.Ver != 1 || n.Name != "New" {
		t.Fatalf("UpdateCampaign = %+v, %v, %v", n, ok, err)
	}
	var stale *StaleError
	if err := s.Track([]Item{{v0, []byte("v"), 1, 1, nil}}, make([]bool, 1)); !errors.As(err, &stale) {
		t.Fatalf("a stale version tracked: %v", err)
	}
	if track(t, s, Item{Ref("old", 0, 1), []byte("u"), 1, 1, nil})[0] {
		t.Fatal("a repeat across the update counted")
	}
	if ok, err := s.DeleteCampaign("old"); err != nil || !ok {
		t.Fatalf("DeleteCampaign = %v, %v", ok, err)
	}
	if err := s.Track([]Item{{Ref("old", 0, 1), []byte("w"), 1, 1, nil}}, make([]bool, 1)); !errors.As(err, &stale) {
		t.Fatalf("a deleted campaign tracked: %v", err)
	}
	if _, total, _ := s.Minutes("old", 1, 1); total != 0 {
		t.Fatalf("after delete: total %d", total)
	}
	if keys := redisKeys(t, s, "imp:{old}:fq:*"); len(keys) != 0 {
		t.Fatalf("exposure keys after delete: %v", keys)
	}
	c, err = s.CreateCampaign(Campaign{ID: "old", Name: "Again"}, 10)
	if err != nil || c.Gen == 0 {
		t.Fatalf("created again: %+v, %v", c, err)
	}
	if !track(t, s, Item{Ref("old", c.Gen, 0), []byte("u"), 1, 1, nil})[0] {
		t.Fatal("a user of the deleted campaign is a repeat in the new one")
	}
}

// TestDeleteOnCluster: a deletion finds and removes the campaign's keys on
// the node that holds its slot.
func TestDeleteOnCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	s := open(t, Options{URL: cl.URL, Mode: "exact", ClockOffset: redistest.ClockShift(t), Timeout: 5 * time.Second,
		Dedup: sketch.Options{TTL: time.Hour, Slices: 6, Capacity: 10000, FalsePositiveRate: 0.001}})
	c, err := s.CreateCampaign(Campaign{ID: "k", Name: "K"}, 10)
	if err != nil {
		t.Fatal(err)
	}
	ref := Ref("k", c.Gen, c.Ver)
	track(t, s, Item{ref, []byte("u"), 1, 1, nil})
	if ok, err := s.DeleteCampaign("k"); err != nil || !ok {
		t.Fatalf("DeleteCampaign = %v, %v", ok, err)
	}
	if _, total, _ := s.Minutes(ref, 1, 1); total != 0 {
		t.Fatalf("after delete: total %d", total)
	}
}

// TestMetaRecords: a campaign's record keeps its caps (v3), is the v2
// record of the version before caps when it has none (which that version
// reads), and records of every earlier version still read; malformed ones
// are refused.
func TestMetaRecords(t *testing.T) {
	start := time.Unix(1767225600, 5).UTC()
	end := start.Add(48 * time.Hour)
	caps := []Cap{{3, time.Hour}, {10, 24 * time.Hour}, {4294967295, 90*time.Minute + 1}}
	for _, tc := range []struct {
		c      Campaign
		record string
	}{
		{Campaign{ID: "a", Name: "A b", Start: start, End: end, Gen: 7, Ver: 2, Caps: caps},
			"v3 1767225600000000005 1767398400000000005 7 2 3:3600000000000,10:86400000000000,4294967295:5400000000001 A b"},
		{Campaign{ID: "a", Name: "A", Start: start, Gen: 7, Caps: caps[:1]}, "v3 1767225600000000005 - 7 0 3:3600000000000 A"},
		{Campaign{ID: "a", Name: "A  b", Start: start, Gen: 7, Ver: 1}, "v2 1767225600000000005 - 7 1 A  b"},
		{Campaign{ID: "a", Name: "", Start: start, Gen: 7, Ver: 1, Caps: caps[:1]}, "v3 1767225600000000005 - 7 1 3:3600000000000 "},
	} {
		if got := formatMeta(tc.c); got != tc.record {
			t.Errorf("formatMeta(%+v) = %q, want %q", tc.c, got, tc.record)
		}
		got, err := parseMeta("a", tc.record)
		if err != nil || fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", tc.c) {
			t.Errorf("parseMeta(%q) = %+v, %v; want %+v", tc.record, got, err, tc.c)
		}
	}
	if c, err := parseMeta("a", "1767225600000000000 Old name"); err != nil || c.Name != "Old name" || c.Caps != nil || c.Gen != 0 {
		t.Errorf("an earlier version's record: %+v, %v", c, err)
	}
	for _, bad := range []string{
		"v3 1 - 7 0 A", "v3 1 - 7 0  A", "v3 1 - 7 0 3 A", "v3 1 - 7 0 3:x A", "v3 1 - 7 0 0:60000000000 A",
		"v3 1 - 7 0 3:0 A", "v3 1 - 7 0 3:-5 A", "v3 1 - 7 0 3:60000000000, A", "v2 1 - 7", "v3 x - 7 0 3:60000000000 A",
	} {
		if c, err := parseMeta("a", bad); err == nil {
			t.Errorf("parseMeta(%q) = %+v, want an error", bad, c)
		}
	}
}
