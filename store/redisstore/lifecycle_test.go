package redisstore

import (
	"context"
	"errors"
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
