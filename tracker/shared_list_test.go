package tracker

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/impressiond/impressiond/store/redisstore"
)

// TestRemoteListerCoalesces: lists that arrive while a read of every
// campaign runs share one next read, and none is answered from a read that
// started before it arrived.
func TestRemoteListerCoalesces(t *testing.T) {
	r := newRemoteLister()
	first := []redisstore.Campaign{{ID: "old"}}
	next := []redisstore.Campaign{{ID: "old"}, {ID: "new"}}
	started, release := make(chan struct{}), make(chan struct{})
	firstDone := make(chan []redisstore.Campaign)
	go func() {
		all, _ := r.list(func() ([]redisstore.Campaign, error) {
			close(started)
			<-release
			return first, nil
		})
		firstDone <- all
	}()
	<-started

	const waiting = 10
	var reads atomic.Int32
	var wg sync.WaitGroup
	got := make([][]redisstore.Campaign, waiting)
	for i := range waiting {
		wg.Go(func() {
			got[i], _ = r.list(func() ([]redisstore.Campaign, error) {
				reads.Add(1)
				return next, nil
			})
		})
	}
	waitFor(t, "every list waiting in the next group", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.pending != nil && r.pending.members == waiting
	})
	close(release)
	if all := <-firstDone; len(all) != 1 {
		t.Fatalf("the first list got %d campaigns, want its own read's 1", len(all))
	}
	wg.Wait()
	if n := reads.Load(); n != 1 {
		t.Fatalf("%d lists waiting made %d reads, want 1", waiting, n)
	}
	for i, all := range got {
		if len(all) != 2 {
			t.Fatalf("list %d got %d campaigns, want the 2 of a read that started after it", i, len(all))
		}
	}
}

// waitFor waits until cond holds, failing the test after 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
