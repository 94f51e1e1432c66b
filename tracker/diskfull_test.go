package tracker

import (
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/impressiond/impressiond/store"
)

// fullFile is a log segment file whose writes and fsyncs fail with ENOSPC
// while full is set.
type fullFile struct {
	*os.File
	mu   *sync.Mutex
	full *bool
}

func (f fullFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if *f.full {
		return 0, syscall.ENOSPC
	}
	return f.File.Write(p)
}

func (f fullFile) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if *f.full {
		return syscall.ENOSPC
	}
	return f.File.Sync()
}

// TestDiskFull: once the log cannot write, every write is refused as
// Unavailable, naming the operating system's reason and no path: an
// impression already applied is "may not survive a restart" (its retry
// is a duplicate), later ones and campaigns change nothing, a batch fails
// as a whole; reads go on and the storage gauge drops to 0.
func TestDiskFull(t *testing.T) {
	var mu sync.Mutex
	full := false
	setFull := func(v bool) { mu.Lock(); full = v; mu.Unlock() }
	clock := &fakeClock{t: suiteNow(t)}
	dir := t.TempDir()
	tr, err := Open(Options{
		Dedup: newDedup(t, "exact", 0), DataDir: dir, Now: clock.Now, Logger: quiet,
		OpenLogFile: func(p string) (store.File, error) {
			f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			return fullFile{f, &mu, &full}, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	create(t, tr, "c", clock.Now())
	if _, err := tr.Track(imp("c", "before")); err != nil {
		t.Fatal(err)
	}
	if got := metric(t, tr, "impressiond_storage_healthy"); got != "1" {
		t.Fatalf("storage_healthy %s before the disk is full", got)
	}
	setFull(true)
	unavailable := func(what string, err error, says string) {
		t.Helper()
		e, ok := err.(*Error)
		if !ok || e.Kind != Unavailable || !strings.Contains(e.Msg, "no space left on device") || !strings.Contains(e.Msg, says) || strings.Contains(e.Msg, dir) {
			t.Fatalf("%s while the disk is full: %#v, want Unavailable saying %q and why", what, err, says)
		}
	}
	_, err = tr.Track(imp("c", "during"))
	unavailable("the first impression", err, "may not survive a restart")
	_, err = tr.Track(imp("c", "during2"))
	unavailable("a later impression", err, "nothing was counted")
	out := []Outcome{{Dup: true}}
	err = tr.TrackBatch([]Impression{*imp("c", "b1")}, out)
	unavailable("a batch", err, "nothing was counted")
	_, err = tr.Create(spec("d", "D", ""))
	unavailable("a campaign", err, "nothing was counted")
	if _, err := tr.Campaign("d"); err != ErrCampaignNotFound {
		t.Fatalf("a refused campaign exists: %v", err)
	}
	if n := total(t, tr, "c"); n != 2 {
		t.Fatalf("total %d while the disk is full, want 2 (before, and the first during: applied, not durable)", n)
	}
	if got := metric(t, tr, "impressiond_storage_healthy"); got != "0" {
		t.Fatalf("storage_healthy %s while the disk is full, want 0", got)
	}
}

// TestBatchNotDurable: a batch whose append fails after it was applied
// fails as a whole with the "may not survive a restart" error.
func TestBatchNotDurable(t *testing.T) {
	var mu sync.Mutex
	full := false
	clock := &fakeClock{t: suiteNow(t)}
	tr, err := Open(Options{
		Dedup: newDedup(t, "bloom", 0), DataDir: t.TempDir(), Now: clock.Now, Logger: quiet,
		OpenLogFile: func(p string) (store.File, error) {
			f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			return fullFile{f, &mu, &full}, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	create(t, tr, "c", clock.Now())
	mu.Lock()
	full = true
	mu.Unlock()
	err = tr.TrackBatch([]Impression{*imp("c", "b1"), *imp("c", "b2")}, make([]Outcome, 2))
	if e, ok := err.(*Error); !ok || e.Kind != Unavailable || !strings.Contains(e.Msg, "may not survive a restart") {
		t.Fatalf("TrackBatch = %#v, want the not-durable error", err)
	}
}
