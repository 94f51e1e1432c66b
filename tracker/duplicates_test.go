package tracker

import (
	"testing"
	"time"
)

// TestCountersAreLazy: a campaign's counters are allocated by their first
// add (its first impression, its first duplicate), not before, and a
// restart from a snapshot keeps an empty one unallocated while a used one
// gets its counts back.
func TestCountersAreLazy(t *testing.T) {
	clock := &fakeClock{t: suiteNow(t)}
	dir := t.TempDir()
	tr := openDir(t, "bloom", dir, clock, nil)
	create(t, tr, "idle", clock.Now().Add(-time.Hour))
	create(t, tr, "none", clock.Now().Add(-time.Hour))
	create(t, tr, "some", clock.Now().Add(-time.Hour))
	for _, id := range []string{"none", "some", "some"} {
		if _, err := tr.Track(imp(id, "u")); err != nil {
			t.Fatal(err)
		}
	}
	allocated := func(tr *Tracker, id string) bool {
		return tr.st.(*local).campaigns.get([]byte(id)).dups.p.Load() != nil
	}
	if allocated(tr, "none") || !allocated(tr, "some") {
		t.Fatalf("duplicates allocated: none %v, some %v; want false, true", allocated(tr, "none"), allocated(tr, "some"))
	}
	if err := tr.Shutdown(); err != nil {
		t.Fatal(err)
	}
	again := openDir(t, "bloom", dir, clock, nil)
	if again.Restored().Snapshot == "" {
		t.Fatal("no snapshot restored")
	}
	if allocated(again, "none") || !allocated(again, "some") {
		t.Fatalf("after the restart: none %v, some %v; want false, true", allocated(again, "none"), allocated(again, "some"))
	}
	counts := func(tr *Tracker, id string) bool {
		return tr.st.(*local).campaigns.get([]byte(id)).counter.p.Load() != nil
	}
	for _, tr := range []*Tracker{again} {
		if counts(tr, "idle") || !counts(tr, "none") {
			t.Fatalf("counts allocated: idle %v, none %v; want false, true", counts(tr, "idle"), counts(tr, "none"))
		}
	}
	if n := total(t, again, "none"); n != 1 {
		t.Fatalf("none's total after the restart: %d", n)
	}
	if _, w, _ := again.Stats("some"); w.Duplicates.Total != 1 || w.Duplicates.LastHour != 1 {
		t.Fatalf("some's duplicates after the restart: %+v", w.Duplicates)
	}
}
