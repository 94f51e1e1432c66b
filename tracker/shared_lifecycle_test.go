package tracker

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/impressiond/impressiond/internal/redistest"
	"github.com/impressiond/impressiond/store/redisstore"
)

// Tests of a campaign's lifecycle with trackers sharing one Redis: every
// change or deletion answered by one is seen by the other's next track
// and read, though its cache held the campaign before.

// twoShared opens two trackers on one Redis, each with its own store
// (and so its own cache).
func twoShared(t *testing.T, mode string) (a, b *Tracker) {
	t.Helper()
	srv := redistest.Start(t)
	clock := &fakeClock{t: suiteNow(t)}
	open := func() *Tracker {
		r, err := redisstore.Open(redisstore.Options{URL: srv.URL, Mode: mode, Timeout: 5 * time.Second, Clock: clock.Now, Dedup: suiteDedup})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Close)
		tr, err := Open(Options{Redis: r, Now: clock.Now, MaxSkew: time.Minute, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tr.Close() })
		return tr
	}
	return open(), open()
}

func TestSharedLifecycle(t *testing.T) {
	for _, mode := range []string{"exact", "bloom"} {
		t.Run(mode, func(t *testing.T) {
			a, b := twoShared(t, mode)
			start := a.Now().Add(-time.Hour)
			create(t, a, "c", start)
			if _, err := b.Track(imp("c", "u")); err != nil {
				t.Fatal(err) // b caches c
			}

			// An end set on a: b refuses an impression after it.
			end := a.Now().Add(-time.Minute).Format(time.RFC3339)
			if _, err := a.Update("c", CampaignPatch{End: []byte(end), Name: []byte("Renamed")}); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Track(imp("c", "v")); err != ErrAfterEnd {
				t.Fatalf("b tracked after the end a set: %v, want ErrAfterEnd", err)
			}
			out := make([]Outcome, 2)
			if err := b.TrackBatch([]Impression{*imp("c", "w"), *stamped("c", "x", a.Now().Add(-30*time.Minute))}, out); err != nil {
				t.Fatal(err)
			}
			if out[0].Err != ErrAfterEnd || out[1].Err != nil {
				t.Fatalf("batch after the end: %+v", out)
			}
			if c, err := b.Campaign("c"); err != nil || c.Name != "Renamed" || c.End.Format(time.RFC3339) != end {
				t.Fatalf("b reads %+v, %v", c, err)
			}
			if _, err := a.Update("c", CampaignPatch{ClearEnd: true}); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Track(imp("c", "v")); err != nil {
				t.Fatalf("b after the end was cleared: %v", err)
			}

			// Deleted on a: b counts nothing and reads nothing.
			if err := a.Delete("c"); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Track(imp("c", "y")); err != ErrCampaignNotFound {
				t.Fatalf("b tracked a deleted campaign: %v", err)
			}
			if err := b.TrackBatch([]Impression{*imp("c", "z")}, out[:1]); err != nil || out[0].Err != ErrCampaignNotFound {
				t.Fatalf("b's batch of a deleted campaign: %+v, %v", out[0], err)
			}
			if _, _, err := b.Stats("c"); err != ErrCampaignNotFound {
				t.Fatalf("b's stats of a deleted campaign: %v", err)
			}
			if _, _, _, err := b.Series("c", 5); err != ErrCampaignNotFound {
				t.Fatalf("b's series of a deleted campaign: %v", err)
			}
			if err := b.Delete("c"); err != ErrCampaignNotFound {
				t.Fatalf("deleted twice: %v", err)
			}
			if l, _, err := b.Campaigns("", 10); err != nil || len(l) != 0 {
				t.Fatalf("list after delete: %v, %v", l, err)
			}

			// Created again: from nothing, on both.
			create(t, b, "c", start)
			_, w, err := a.Stats("c")
			if err != nil || w.Total != 0 || w.LastHour != 0 || w.Duplicates.Total != 0 {
				t.Fatalf("re-created: %+v, %v", w, err)
			}
			if dup, err := a.Track(imp("c", "u")); err != nil || dup {
				t.Fatalf("a user of the deleted campaign: dup %v, %v", dup, err)
			}
			if dup, err := b.Track(imp("c", "u")); err != nil || !dup {
				t.Fatalf("a repeat in the new campaign: dup %v, %v", dup, err)
			}
			if _, w, _ := b.Stats("c"); w.Total != 1 || w.Duplicates.Total != 1 {
				t.Fatalf("re-created after two tracks: %+v", w)
			}
		})
	}
}

// TestSharedDeleteRace: impressions tracked on b while a deletes the
// campaign; none answered as counted after Delete returned shows in any
// figure of the campaign created again under its id.
func TestSharedDeleteRace(t *testing.T) {
	a, b := twoShared(t, "exact")
	start := a.Now().Add(-time.Hour)
	for round := range 5 {
		create(t, a, "r", start)
		var deleted atomic.Bool
		var late atomic.Int64
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for g := range 2 {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					// Only a track that started after Delete returned
					// must fail: one in flight across it may be counted
					// before the deletion took effect.
					after := deleted.Load()
					_, err := b.Track(imp("r", fmt.Sprintf("u%d-%d-%d", round, g, i)))
					if err == nil && after {
						late.Add(1)
					}
				}
			})
		}
		time.Sleep(20 * time.Millisecond)
		if err := a.Delete("r"); err != nil {
			t.Fatal(err)
		}
		deleted.Store(true)
		time.Sleep(10 * time.Millisecond)
		close(stop)
		wg.Wait()
		if n := late.Load(); n != 0 {
			t.Fatalf("round %d: %d impressions counted after Delete returned", round, n)
		}
		create(t, a, "r", start)
		if _, w, err := b.Stats("r"); err != nil || w.Total != 0 || w.Duplicates.Total != 0 || w.LastDay != 0 {
			t.Fatalf("round %d: re-created: %+v, %v", round, w, err)
		}
		if err := a.Delete("r"); err != nil {
			t.Fatal(err)
		}
	}
}
