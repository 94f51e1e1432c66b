package tracker

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// Unit tests of a campaign's lifecycle in the in-process state: an end
// time on create and by Update, renaming, deletion, and creating an id
// again, in memory and across restarts (snapshot and log).

func endAt(ts time.Time) []byte { return []byte(ts.Format(time.RFC3339Nano)) }

// TestEndTime: an impression whose event time is after end_time is
// refused (at end_time exactly it is counted); an end before the start is
// refused at creation and by Update, and ClearEnd removes the end.
func TestEndTime(t *testing.T) {
	for _, mode := range []string{"bloom", "exact"} {
		t.Run(mode, func(t *testing.T) {
			clock := &fakeClock{t: suiteNow(t)}
			tr := openTracker(t, clock, func(o *Options) { o.Dedup = newDedup(t, mode, 0) })
			now := clock.Now()
			start := now.Add(-2 * time.Hour)
			end := now.Add(-time.Hour)
			c, err := tr.Create(CampaignSpec{ID: []byte("e"), Name: []byte("E"), Start: endAt(start), End: endAt(end)})
			if err != nil || !c.End.Equal(end) || c.End.Location() != time.UTC {
				t.Fatalf("create with end: %+v, %v", c, err)
			}
			if dup, err := tr.Track(stamped("e", "at-end", end)); err != nil || dup {
				t.Fatalf("an impression at end_time: %v, %v; want counted", dup, err)
			}
			if _, err := tr.Track(stamped("e", "after", end.Add(time.Nanosecond))); err != ErrAfterEnd {
				t.Fatalf("an impression 1ns after end_time: %v, want ErrAfterEnd", err)
			}
			if _, err := tr.Track(imp("e", "now")); err != ErrAfterEnd {
				t.Fatalf("an impression without timestamp after end_time: %v, want ErrAfterEnd", err)
			}
			out := make([]Outcome, 2)
			if err := tr.TrackBatch([]Impression{*stamped("e", "b1", end.Add(-time.Minute)), *imp("e", "b2")}, out); err != nil {
				t.Fatal(err)
			}
			if out[0] != (Outcome{}) || out[1].Err != ErrAfterEnd {
				t.Fatalf("batch outcomes %+v, want counted then ErrAfterEnd", out)
			}
			if got := total(t, tr, "e"); got != 2 {
				t.Fatalf("total %d, want 2", got)
			}
			// Moving the end later admits the impression refused before.
			c, err = tr.Update("e", CampaignPatch{End: endAt(now)})
			if err != nil || !c.End.Equal(now) {
				t.Fatalf("update end: %+v, %v", c, err)
			}
			if dup, err := tr.Track(imp("e", "now")); err != nil || dup {
				t.Fatalf("after the end moved: %v, %v; want counted", dup, err)
			}
			c, err = tr.Update("e", CampaignPatch{ClearEnd: true})
			if err != nil || !c.End.IsZero() {
				t.Fatalf("clear end: %+v, %v", c, err)
			}
			clock.Add(time.Hour)
			if dup, err := tr.Track(imp("e", "later")); err != nil || dup {
				t.Fatalf("without an end: %v, %v; want counted", dup, err)
			}
			for _, bad := range []struct {
				end  []byte
				want error
			}{
				{endAt(start.Add(-time.Nanosecond)), ErrEndTimeRange},
				{[]byte("2262-01-01T00:00:00Z"), ErrEndTimeRange},
				{[]byte("tomorrow"), ErrEndTimeFormat},
			} {
				if _, err := tr.Update("e", CampaignPatch{End: bad.end}); err != bad.want {
					t.Fatalf("update end %s: %v, want %v", bad.end, err, bad.want)
				}
				if _, err := tr.Create(CampaignSpec{ID: []byte("x"), Name: []byte("X"), Start: endAt(start), End: bad.end}); err != bad.want {
					t.Fatalf("create with end %s: %v, want %v", bad.end, err, bad.want)
				}
			}
			if c, _ := tr.Campaign("e"); !c.End.IsZero() {
				t.Fatalf("a refused update changed the campaign: %+v", c)
			}
			if _, err := tr.Campaign("x"); err != ErrCampaignNotFound {
				t.Fatalf("a refused create registered the campaign: %v", err)
			}
			// An end equal to the start is allowed.
			if _, err := tr.Update("e", CampaignPatch{End: endAt(start)}); err != nil {
				t.Fatalf("end at the start: %v", err)
			}
		})
	}
}

// TestUpdate: a rename keeps the id, start, counts and dedup pairs; an
// unknown id is ErrCampaignNotFound; a bad name changes nothing.
func TestUpdate(t *testing.T) {
	clock := &fakeClock{t: suiteNow(t)}
	tr := openTracker(t, clock, nil)
	c := create(t, tr, "r", clock.Now().Add(-time.Hour))
	if _, err := tr.Track(imp("r", "u")); err != nil {
		t.Fatal(err)
	}
	got, err := tr.Update("r", CampaignPatch{Name: []byte("Renamed")})
	if err != nil || got.Name != "Renamed" || got.ID != "r" || !got.Start.Equal(c.Start) {
		t.Fatalf("rename: %+v, %v", got, err)
	}
	if dup, err := tr.Track(imp("r", "u")); err != nil || !dup {
		t.Fatalf("a pair counted before the rename: %v, %v; want duplicate", dup, err)
	}
	if n := total(t, tr, "r"); n != 1 {
		t.Fatalf("total %d after the rename, want 1", n)
	}
	if p, _, _ := tr.Campaigns("", 10); len(p) != 1 || p[0].Name != "Renamed" {
		t.Fatalf("listing after the rename: %+v", p)
	}
	for _, bad := range []struct {
		name []byte
		want error
	}{{[]byte(""), ErrNameLength}, {[]byte{0xff}, ErrNameUTF8}} {
		if _, err := tr.Update("r", CampaignPatch{Name: bad.name}); err != bad.want {
			t.Fatalf("name %q: %v, want %v", bad.name, err, bad.want)
		}
	}
	if c, _ := tr.Campaign("r"); c.Name != "Renamed" {
		t.Fatalf("a refused rename changed the name to %q", c.Name)
	}
	if _, err := tr.Update("nope", CampaignPatch{Name: []byte("N")}); err != ErrCampaignNotFound {
		t.Fatalf("update of an unknown id: %v", err)
	}
	// An empty patch changes nothing and answers the campaign.
	if got, err := tr.Update("r", CampaignPatch{}); err != nil || got.Name != "Renamed" {
		t.Fatalf("empty patch: %+v, %v", got, err)
	}
}

// TestDelete: a deleted campaign is not found by any read or track, and
// the same id created again starts from nothing: no count, and every
// user of the deleted campaign counted afresh.
func TestDelete(t *testing.T) {
	for _, mode := range []string{"bloom", "exact"} {
		t.Run(mode, func(t *testing.T) {
			clock := &fakeClock{t: suiteNow(t)}
			tr := openTracker(t, clock, func(o *Options) { o.Dedup = newDedup(t, mode, 0) })
			create(t, tr, "d", clock.Now().Add(-time.Hour))
			create(t, tr, "keep", clock.Now().Add(-time.Hour))
			for i := range 5 {
				for _, id := range []string{"d", "keep"} {
					if _, err := tr.Track(imp(id, fmt.Sprint("u", i))); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := tr.Delete("d"); err != nil {
				t.Fatal(err)
			}
			if err := tr.Delete("d"); err != ErrCampaignNotFound {
				t.Fatalf("second delete: %v, want ErrCampaignNotFound", err)
			}
			if _, err := tr.Campaign("d"); err != ErrCampaignNotFound {
				t.Fatalf("campaign after delete: %v", err)
			}
			if _, _, err := tr.Stats("d"); err != ErrCampaignNotFound {
				t.Fatalf("stats after delete: %v", err)
			}
			if _, err := tr.Track(imp("d", "u0")); err != ErrCampaignNotFound {
				t.Fatalf("track after delete: %v", err)
			}
			if _, err := tr.Update("d", CampaignPatch{Name: []byte("N")}); err != ErrCampaignNotFound {
				t.Fatalf("update after delete: %v", err)
			}
			if p, _, _ := tr.Campaigns("", 10); len(p) != 1 || p[0].ID != "keep" {
				t.Fatalf("listing after delete: %+v", p)
			}
			if n := tr.st.count(); n != 1 {
				t.Fatalf("count %d after delete, want 1", n)
			}
			create(t, tr, "d", clock.Now().Add(-time.Hour))
			if n := total(t, tr, "d"); n != 0 {
				t.Fatalf("total %d of the new campaign, want 0", n)
			}
			for i := range 5 {
				if dup, err := tr.Track(imp("d", fmt.Sprint("u", i))); err != nil || dup {
					t.Fatalf("u%d of the new campaign: %v, %v; want counted", i, dup, err)
				}
			}
			if n := total(t, tr, "d"); n != 5 {
				t.Fatalf("total %d, want 5", n)
			}
			if dup, _ := tr.Track(imp("keep", "u0")); !dup {
				t.Fatal("another campaign's pairs were lost")
			}
		})
	}
}

// TestDeleteRacesTrack: impressions tracked while their campaign is
// deleted are each either counted before the deletion or refused with
// ErrCampaignNotFound; on a durable state a restart restores exactly the
// acknowledged state (the campaign gone, nothing refused counted).
func TestDeleteRacesTrack(t *testing.T) {
	clock := &fakeClock{t: suiteNow(t)}
	dir := t.TempDir()
	tr := openDir(t, "exact", dir, clock, nil)
	create(t, tr, "race", clock.Now().Add(-time.Hour))
	var wg sync.WaitGroup
	var mu sync.Mutex
	counted := 0
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				dup, err := tr.Track(imp("race", fmt.Sprint(g, "-", i)))
				switch {
				case err == ErrCampaignNotFound:
				case err != nil || dup:
					t.Errorf("track: %v, %v", dup, err)
				default:
					mu.Lock()
					counted++
					mu.Unlock()
				}
			}
		}()
	}
	if err := tr.Delete("race"); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	again := openDir(t, "exact", dir, clock, nil)
	if _, err := again.Campaign("race"); err != ErrCampaignNotFound {
		t.Fatalf("the deleted campaign after a restart: %v", err)
	}
	if st := again.Restored(); st.Campaigns != 0 {
		t.Fatalf("restored %+v", st)
	}
	t.Logf("%d impressions counted before the deletion", counted)
}

// TestLifecycleSurvivesRestart: renames, ends, deletions and a
// re-created id come back after a restart from the log alone (as after
// kill -9) and from a snapshot (as after SIGTERM), in both modes, with
// the re-created campaign's dedup pairs its own.
func TestLifecycleSurvivesRestart(t *testing.T) {
	for _, mode := range []string{"bloom", "exact"} {
		for _, snapshot := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/snapshot=%v", mode, snapshot), func(t *testing.T) {
				clock := &fakeClock{t: suiteNow(t)}
				dir := t.TempDir()
				tr := openDir(t, mode, dir, clock, nil)
				start := clock.Now().Add(-time.Hour)
				end := clock.Now().Add(time.Hour)
				create(t, tr, "renamed", start)
				create(t, tr, "ended", start)
				create(t, tr, "again", start)
				create(t, tr, "gone", start)
				for _, id := range []string{"renamed", "ended", "again", "gone"} {
					if _, err := tr.Track(imp(id, "u")); err != nil {
						t.Fatal(err)
					}
				}
				mustUpdate(t, tr, "renamed", CampaignPatch{Name: []byte("New name")})
				mustUpdate(t, tr, "ended", CampaignPatch{End: endAt(end)})
				mustUpdate(t, tr, "ended", CampaignPatch{Name: []byte("Ended")})
				for _, id := range []string{"again", "gone"} {
					if err := tr.Delete(id); err != nil {
						t.Fatal(err)
					}
				}
				create(t, tr, "again", start)
				if _, err := tr.Track(imp("again", "v")); err != nil {
					t.Fatal(err)
				}
				stop := tr.Close
				if snapshot {
					stop = tr.Shutdown
				}
				if err := stop(); err != nil {
					t.Fatal(err)
				}
				b := openDir(t, mode, dir, clock, nil)
				if c, err := b.Campaign("renamed"); err != nil || c.Name != "New name" || !c.End.IsZero() {
					t.Fatalf("renamed: %+v, %v", c, err)
				}
				if c, err := b.Campaign("ended"); err != nil || c.Name != "Ended" || !c.End.Equal(end) {
					t.Fatalf("ended: %+v, %v", c, err)
				}
				if _, err := b.Campaign("gone"); err != ErrCampaignNotFound {
					t.Fatalf("gone: %v", err)
				}
				if n := total(t, b, "again"); n != 1 {
					t.Fatalf("again: total %d, want 1 (its own impression only)", n)
				}
				for _, p := range []struct {
					id, user string
					dup      bool
				}{
					{"renamed", "u", true}, {"ended", "u", true}, {"again", "v", true},
					{"again", "u", false}, // the deleted campaign's pair
				} {
					if dup, err := b.Track(imp(p.id, p.user)); err != nil || dup != p.dup {
						t.Fatalf("%s/%s after the restart: %v, %v; want dup %v", p.id, p.user, dup, err, p.dup)
					}
				}
				if st := b.Restored(); st.Campaigns != 3 {
					t.Fatalf("restored %+v, want 3 campaigns", st)
				}
				// A second restart after this one's changes: what the
				// first restored was put back in its place.
				if err := b.Shutdown(); err != nil {
					t.Fatal(err)
				}
				c := openDir(t, mode, dir, clock, nil)
				if cc, err := c.Campaign("ended"); err != nil || !cc.End.Equal(end) || total(t, c, "again") != 2 {
					t.Fatalf("second restart: %+v, %v", cc, err)
				}
			})
		}
	}
}

func mustUpdate(t *testing.T, tr *Tracker, id string, p CampaignPatch) Campaign {
	t.Helper()
	c, err := tr.Update(id, p)
	if err != nil {
		t.Fatalf("update %s: %v", id, err)
	}
	return c
}
