package tracker

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/impressiond/impressiond/sketch"
	"github.com/impressiond/impressiond/store"
)

// Unit tests of durability: what a data directory gives back after a
// restart, when a snapshot is written, and what damage Open refuses.

// openDir opens a durable tracker of mode on dir (closed when the test
// ends, unless the test stops it first).
func openDir(t *testing.T, mode, dir string, clock *fakeClock, set func(o *Options)) *Tracker {
	t.Helper()
	return openTracker(t, clock, func(o *Options) {
		o.Dedup, o.DataDir, o.MaxSkew = newDedup(t, mode, 0), dir, time.Minute
		if set != nil {
			set(o)
		}
	})
}

func openDirErr(t *testing.T, mode, dir string, clock *fakeClock, set func(o *Options)) error {
	t.Helper()
	o := Options{Dedup: newDedup(t, mode, 0), DataDir: dir, Now: clock.Now, Logger: quiet, SnapshotInterval: time.Hour}
	if set != nil {
		set(&o)
	}
	tr, err := Open(o)
	if err == nil {
		tr.Close()
	}
	return err
}

// fill creates campaigns alpha and beta and counts alpha/u0..u9 one at a
// time and beta/u0..u19 in a batch with a repeat of each; it returns the
// counted pairs.
func fill(t *testing.T, tr *Tracker, clock *fakeClock) []string {
	t.Helper()
	now := clock.Now()
	create(t, tr, "alpha", now.Add(-time.Hour))
	if _, err := tr.Create(CampaignSpec{ID: []byte("beta"), Name: []byte("Beta ß"), Start: []byte("2001-02-03T04:05:06.789Z")}); err != nil {
		t.Fatal(err)
	}
	var pairs []string
	for i := range 10 {
		u := fmt.Sprintf("u%d", i)
		if dup, err := tr.Track(imp("alpha", u)); err != nil || dup {
			t.Fatalf("alpha/%s: %v, %v", u, dup, err)
		}
		pairs = append(pairs, "alpha/"+u)
	}
	var items []Impression
	for i := range 20 {
		u := fmt.Sprintf("u%d", i)
		items = append(items, *stamped("beta", u, now.Add(-time.Duration(i)*time.Minute)), *imp("beta", u))
		pairs = append(pairs, "beta/"+u)
	}
	out := make([]Outcome, len(items))
	if err := tr.TrackBatch(items, out); err != nil {
		t.Fatal(err)
	}
	for i, o := range out {
		if o.Err != nil || o.Dup != (i%2 == 1) {
			t.Fatalf("batch item %d: %+v", i, o)
		}
	}
	return pairs
}

// check asserts what fill left: the campaigns as created, their counts
// and per-minute series, and every pair a duplicate.
func check(t *testing.T, tr *Tracker, clock *fakeClock, pairs []string) {
	t.Helper()
	b, err := tr.Campaign("beta")
	if err != nil || b.Name != "Beta ß" || b.Start.Format(time.RFC3339Nano) != "2001-02-03T04:05:06.789Z" || b.Start.Location() != time.UTC {
		t.Fatalf("beta restored as %+v, %v", b, err)
	}
	a, err := tr.Campaign("alpha")
	if err != nil || a.Name != "Campaign alpha" {
		t.Fatalf("alpha restored as %+v, %v", a, err)
	}
	if n := total(t, tr, "alpha"); n != 10 {
		t.Fatalf("alpha total %d, want 10", n)
	}
	_, _, counts, err := tr.Series("beta", 20)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range counts {
		if n != 1 {
			t.Fatalf("beta series %v, want one a minute", counts)
		}
		_ = i
	}
	for _, p := range pairs {
		c, u, _ := strings.Cut(p, "/")
		if dup, err := tr.Track(imp(c, u)); err != nil || !dup {
			t.Fatalf("%s after the restart: %v, %v; want duplicate", p, dup, err)
		}
	}
	if n := total(t, tr, "beta"); n != 20 {
		t.Fatalf("beta total %d, want 20", n)
	}
}

// TestRestart: a durable tracker comes back with its campaigns, counts
// and dedup window, from a snapshot (Shutdown) or from the log alone
// (Close), in both modes; new campaigns after the restart get fresh
// indexes, and Restored says what was loaded.
func TestRestart(t *testing.T) {
	for _, mode := range []string{"bloom", "exact"} {
		for _, snapshot := range []bool{true, false} {
			name := mode + map[bool]string{true: "/snapshot", false: "/log"}[snapshot]
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				clock := &fakeClock{t: suiteNow(t)}
				a := openDir(t, mode, dir, clock, nil)
				if st := a.Restored(); !st.NewSecret || st.DedupReset != "" || st.Campaigns != 0 || st.Snapshot != "" || st.Records != 0 {
					t.Fatalf("a new directory restored %+v", st)
				}
				pairs := fill(t, a, clock)
				stop := a.Close
				if snapshot {
					stop = a.Shutdown
				}
				if err := stop(); err != nil {
					t.Fatal(err)
				}
				clock.Add(time.Minute)
				b := openDir(t, mode, dir, clock, nil)
				st := b.Restored()
				if st.Campaigns != 2 || st.NewSecret || st.DedupReset != "" || st.Torn != nil {
					t.Fatalf("restored %+v", st)
				}
				if snapshot && (!strings.Contains(st.Snapshot, "snapshot-") || st.SnapshotAge != time.Minute || st.Records != 0) {
					t.Fatalf("restored %+v; want the snapshot, a minute old, and no log after it", st)
				}
				// Two campaigns, 10 + 20 impressions, 20 duplicates.
				if !snapshot && (st.Snapshot != "" || st.Records != 2+10+20+20 || st.Segments != 1) {
					t.Fatalf("restored %+v; want 52 records of one segment, no snapshot", st)
				}
				if _, w, err := b.Stats("beta"); err != nil || w.Duplicates.Total != 20 || w.Duplicates.LastHour != 20 {
					t.Fatalf("beta's duplicates after the restart: %+v, %v; want 20", w.Duplicates, err)
				}
				clock.Add(-time.Minute) // the series of check is of the minutes of fill
				check(t, b, clock, pairs)
				create(t, b, "gamma", clock.Now())
				if _, err := b.Track(imp("gamma", "u0")); err != nil {
					t.Fatal(err)
				}
				if err := b.Close(); err != nil {
					t.Fatal(err)
				}
				// Once more, from whatever the second run left.
				c := openDir(t, mode, dir, clock, nil)
				if st := c.Restored(); st.Campaigns != 3 {
					t.Fatalf("second restart restored %+v", st)
				}
				if n := total(t, c, "gamma"); n != 1 {
					t.Fatalf("gamma total %d after the second restart", n)
				}
				if n := total(t, c, "alpha"); n != 10 {
					t.Fatalf("alpha total %d after the second restart", n)
				}
			})
		}
	}
}

// TestSnapshotCoversLog: an explicit Snapshot holds the whole state and
// removes the log segments it covers; a restart then replays only what
// came after it.
func TestSnapshotCoversLog(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: suiteNow(t)}
	a := openDir(t, "exact", dir, clock, nil)
	pairs := fill(t, a, clock)
	if err := a.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if err := a.Snapshot(); err != nil { // a second one, of the same state
		t.Fatal(err)
	}
	if _, err := a.Track(imp("alpha", "late")); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	wals, _ := filepath.Glob(filepath.Join(dir, "wal-*"))
	snaps, _ := filepath.Glob(filepath.Join(dir, "snapshot-*"))
	if len(wals) != 1 || len(snaps) != 1 {
		t.Fatalf("after two snapshots and a record: segments %v, snapshots %v; want one of each", wals, snaps)
	}
	b := openDir(t, "exact", dir, clock, nil)
	if got := metric(t, a, "impressiond_snapshot_failures_total"); got != "0" {
		t.Fatalf("snapshot_failures_total %s after good snapshots", got)
	}
	if got := metric(t, a, "impressiond_snapshot_last_success_timestamp_seconds"); got == "0" {
		t.Fatal("no last snapshot time after good snapshots")
	}
	if st := b.Restored(); st.Records != 1 || st.Snapshot != snaps[0] {
		t.Fatalf("restored %+v; want the snapshot and the one record after it", st)
	}
	if n := total(t, b, "alpha"); n != 11 {
		t.Fatalf("alpha total %d, want 11", n)
	}
	pairs = append(pairs, "alpha/late")
	for _, p := range pairs[:1] {
		c, u, _ := strings.Cut(p, "/")
		if dup, _ := b.Track(imp(c, u)); !dup {
			t.Fatalf("%s not a duplicate", p)
		}
	}
	if dup, _ := b.Track(imp("alpha", "late")); !dup {
		t.Fatal("the record after the snapshot was not replayed into the window")
	}
}

// durableLocal opens the local state of a durable tracker on dir, for
// the tests of the snapshot policy.
func durableLocal(t *testing.T, dir string, clock *fakeClock) (*Tracker, *local) {
	t.Helper()
	tr := openDir(t, "exact", dir, clock, nil)
	return tr, tr.st.(*local)
}

func skipped(t *testing.T, tr *Tracker) string {
	var b bytes.Buffer
	tr.WriteMetrics(&b, func(name, typ, text string) {})
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, "impressiond_snapshot_skipped_total "); ok {
			return v
		}
	}
	t.Fatal("no impressiond_snapshot_skipped_total")
	return ""
}

// TestSnapshotPolicy: the periodic snapshot is written only when the state
// changed since the last one and the log written since is at least as
// large as that snapshot; records replayed at start-up count as a change.
func TestSnapshotPolicy(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: suiteNow(t)}
	tr, l := durableLocal(t, dir, clock)
	if wrote, err := l.snapshotIfChanged(); err != nil || wrote {
		t.Fatalf("a new, idle directory: wrote %v, %v; want skipped", wrote, err)
	}
	if got := skipped(t, tr); got != "1" {
		t.Fatalf("skipped_total %s, want 1", got)
	}
	create(t, tr, "c", clock.Now().Add(-time.Hour))
	if wrote, err := l.snapshotIfChanged(); err != nil || !wrote {
		t.Fatalf("after a campaign and no snapshot yet: wrote %v, %v; want written", wrote, err)
	}
	if wrote, err := l.snapshotIfChanged(); err != nil || wrote {
		t.Fatalf("nothing changed: wrote %v, %v; want skipped", wrote, err)
	}
	// A snapshot holding a window costs more than a few small records.
	for i := range 3 {
		if _, err := tr.Track(imp("c", fmt.Sprint("u", i))); err != nil {
			t.Fatal(err)
		}
	}
	p := l.persist
	if grown := int64(p.log.Stats().Bytes) - p.snapLogBytes.Load(); grown >= p.snapSize.Load() {
		t.Fatalf("the test needs a log smaller than the snapshot: %d bytes since, snapshot %d", grown, p.snapSize.Load())
	}
	if wrote, err := l.snapshotIfChanged(); err != nil || wrote {
		t.Fatalf("log smaller than the snapshot: wrote %v, %v; want skipped", wrote, err)
	}
	if got := skipped(t, tr); got != "3" {
		t.Fatalf("skipped_total %s, want 3", got)
	}
	for i := 0; int64(p.log.Stats().Bytes)-p.snapLogBytes.Load() < p.snapSize.Load(); i++ {
		if _, err := tr.Track(imp("c", fmt.Sprint("more", i))); err != nil {
			t.Fatal(err)
		}
	}
	if wrote, err := l.snapshotIfChanged(); err != nil || !wrote {
		t.Fatalf("log as large as the snapshot: wrote %v, %v; want written", wrote, err)
	}
	// Records replayed at start-up are in no snapshot: they are a change,
	// and their bytes count as log written since the snapshot.
	if _, err := tr.Track(imp("c", "last")); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	tr, l = durableLocal(t, dir, clock)
	if st := tr.Restored(); st.Records != 1 {
		t.Fatalf("restored %+v; want one record after the snapshot", st)
	}
	if wrote, err := l.snapshotIfChanged(); err != nil || wrote {
		t.Fatalf("one replayed record: wrote %v, %v; want skipped", wrote, err)
	}
	p = l.persist
	for i := 0; int64(p.log.Stats().Bytes)-p.snapLogBytes.Load() < p.snapSize.Load(); i++ {
		if _, err := tr.Track(imp("c", fmt.Sprint("again", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	tr, l = durableLocal(t, dir, clock)
	if st := tr.Restored(); st.Records < 2 {
		t.Fatalf("restored %+v; want the records after the snapshot", st)
	}
	if wrote, err := l.snapshotIfChanged(); err != nil || !wrote {
		t.Fatalf("replayed records as large as the snapshot, nothing new: wrote %v, %v; want written", wrote, err)
	}
	if wrote, err := l.snapshotIfChanged(); err != nil || wrote {
		t.Fatalf("right after: wrote %v, %v; want skipped", wrote, err)
	}
	// Shutdown writes only a due snapshot: none here.
	snaps, _ := filepath.Glob(filepath.Join(dir, "snapshot-*"))
	if err := tr.Shutdown(); err != nil {
		t.Fatal(err)
	}
	after, _ := filepath.Glob(filepath.Join(dir, "snapshot-*"))
	if len(snaps) != 1 || len(after) != 1 || snaps[0] != after[0] {
		t.Fatalf("snapshots before Shutdown %v, after %v; want the same one", snaps, after)
	}
}

// TestShutdownSnapshots: Shutdown of a changed state writes the snapshot
// the next start loads, with no log to replay.
func TestShutdownSnapshots(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: suiteNow(t)}
	a := openDir(t, "bloom", dir, clock, nil)
	fill(t, a, clock)
	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	b := openDir(t, "bloom", dir, clock, nil)
	if st := b.Restored(); st.Snapshot == "" || st.Records != 0 || st.Campaigns != 2 {
		t.Fatalf("restored %+v", st)
	}
}

func flip(t *testing.T, pattern string, at func(n int) int) string {
	t.Helper()
	files, _ := filepath.Glob(pattern)
	if len(files) == 0 {
		t.Fatalf("no file %s", pattern)
	}
	f := files[len(files)-1]
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	b[at(len(b))] ^= 0x10
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestRestoreRefusesDamage: Open refuses a damaged snapshot or log with a
// CorruptError naming the file, a window of other options unless
// ResetDedup (which keeps the counts and the secret), a Bloom log in exact
// mode, and a directory another tracker holds; a torn tail is cut off
// and reported.
func TestRestoreRefusesDamage(t *testing.T) {
	setup := func(t *testing.T, mode string, snapshot bool) string {
		dir := t.TempDir()
		clock := &fakeClock{t: suiteNow(t)}
		a := openDir(t, mode, dir, clock, nil)
		fill(t, a, clock)
		stop := a.Close
		if snapshot {
			stop = a.Shutdown
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	clock := &fakeClock{t: suiteNow(t)}
	t.Run("snapshot byte flipped", func(t *testing.T) {
		dir := setup(t, "bloom", true)
		f := flip(t, filepath.Join(dir, "snapshot-*"), func(n int) int { return n / 2 })
		var ce *store.CorruptError
		if err := openDirErr(t, "bloom", dir, clock, nil); !errors.As(err, &ce) || ce.File != f {
			t.Fatalf("Open = %v, want a CorruptError in %s", err, f)
		}
	})
	t.Run("log byte flipped", func(t *testing.T) {
		dir := setup(t, "exact", false)
		f := flip(t, filepath.Join(dir, "wal-*"), func(n int) int { return n / 2 })
		var ce *store.CorruptError
		if err := openDirErr(t, "exact", dir, clock, nil); !errors.As(err, &ce) || ce.File != f {
			t.Fatalf("Open = %v, want a CorruptError in %s", err, f)
		}
	})
	t.Run("torn tail", func(t *testing.T) {
		dir := setup(t, "exact", false)
		files, _ := filepath.Glob(filepath.Join(dir, "wal-*"))
		f := files[len(files)-1]
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, b[:len(b)-3], 0o644); err != nil {
			t.Fatal(err)
		}
		tr := openDir(t, "exact", dir, clock, nil)
		// The last record is the duplicate of beta/u19.
		if st := tr.Restored(); st.Torn == nil || st.Records != 2+10+20+20-1 {
			t.Fatalf("restored %+v; want the torn tail reported and the records before it", st)
		}
		if _, w, _ := tr.Stats("beta"); w.Total != 20 || w.Duplicates.Total != 19 {
			t.Fatalf("beta %+v, want 20 counted and 19 duplicates", w)
		}
	})
	t.Run("other options", func(t *testing.T) {
		dir := setup(t, "bloom", true)
		err := openDirErr(t, "bloom", dir, clock, func(o *Options) {
			x := suiteDedup
			x.Capacity *= 2
			o.Dedup = mustDedup(t, "bloom", x)
		})
		if err == nil || !strings.Contains(err.Error(), "different options") || !strings.Contains(err.Error(), "snapshot-") || !strings.Contains(err.Error(), "-dedup-reset") {
			t.Fatalf("Open = %v, want a layout mismatch naming the snapshot and the way out", err)
		}
	})
	t.Run("other options, reset", func(t *testing.T) {
		dir := setup(t, "bloom", true)
		x := suiteDedup
		x.Capacity *= 2
		tr := openDir(t, "bloom", dir, clock, func(o *Options) { o.Dedup, o.ResetDedup = mustDedup(t, "bloom", x), true })
		if st := tr.Restored(); !strings.Contains(st.DedupReset, "different options") || st.NewSecret || st.Campaigns != 2 {
			t.Fatalf("restored %+v; want the window reset for its options, the secret kept", st)
		}
		if n := total(t, tr, "beta"); n != 20 {
			t.Fatalf("beta total %d after the reset, want 20: counts are kept", n)
		}
		// The window is empty: a pair counted before counts once more.
		if dup, err := tr.Track(imp("alpha", "u0")); err != nil || dup {
			t.Fatalf("alpha/u0 after the reset: %v, %v; want counted", dup, err)
		}
		if err := tr.Close(); err != nil {
			t.Fatal(err)
		}
		// The reset wrote a snapshot at once: the next start needs no reset.
		again := openDir(t, "bloom", dir, clock, func(o *Options) { o.Dedup = mustDedup(t, "bloom", x) })
		if st := again.Restored(); st.DedupReset != "" {
			t.Fatalf("second start: %+v", st)
		}
		if dup, _ := again.Track(imp("alpha", "u0")); !dup {
			t.Fatal("the reset run's pair was lost")
		}
	})
	t.Run("bloom log, exact tracker", func(t *testing.T) {
		dir := setup(t, "bloom", false)
		if err := openDirErr(t, "exact", dir, clock, nil); err == nil || !strings.Contains(err.Error(), "-dedup bloom") {
			t.Fatalf("Open = %v, want it to say the log was written in bloom mode", err)
		}
	})
	t.Run("locked", func(t *testing.T) {
		dir := t.TempDir()
		openDir(t, "bloom", dir, clock, nil)
		if err := openDirErr(t, "bloom", dir, clock, nil); !errors.Is(err, store.ErrLocked) {
			t.Fatalf("second tracker on one directory: %v, want ErrLocked", err)
		}
	})
	t.Run("not a directory", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := openDirErr(t, "bloom", f, clock, nil); err == nil {
			t.Fatal("Open on a file succeeded")
		}
	})
}

func mustDedup(t *testing.T, mode string, o sketch.Options) sketch.Deduper {
	t.Helper()
	d, err := sketch.New(mode, o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestSnapshotAfterLogReplay: a state restored from the log alone is in no
// snapshot: the first periodic one writes it, though nothing new came.
func TestSnapshotAfterLogReplay(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: suiteNow(t)}
	tr, _ := durableLocal(t, dir, clock)
	create(t, tr, "c", clock.Now())
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	tr, l := durableLocal(t, dir, clock)
	if wrote, err := l.snapshotIfChanged(); err != nil || !wrote {
		t.Fatalf("after a replay of the log: wrote %v, %v; want written", wrote, err)
	}
	if wrote, err := l.snapshotIfChanged(); err != nil || wrote {
		t.Fatalf("right after: wrote %v, %v; want skipped", wrote, err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	again := openDir(t, "exact", dir, clock, nil)
	if st := again.Restored(); st.Snapshot == "" || st.Records != 0 || st.Campaigns != 1 {
		t.Fatalf("restored %+v", st)
	}
}

// TestSnapshotDueAtEqualSize: "at least as large as that snapshot": a log
// grown by exactly the snapshot's size since it makes the next one due.
func TestSnapshotDueAtEqualSize(t *testing.T) {
	clock := &fakeClock{t: suiteNow(t)}
	tr, l := durableLocal(t, t.TempDir(), clock)
	create(t, tr, "c", clock.Now().Add(-time.Hour))
	if err := tr.Snapshot(); err != nil {
		t.Fatal(err)
	}
	p := l.persist
	gap := func() int64 { return p.snapSize.Load() - (int64(p.log.Stats().Bytes) - p.snapLogBytes.Load()) }
	n := 0
	track := func(user string) int64 {
		t.Helper()
		before := gap()
		if _, err := tr.Track(imp("c", user)); err != nil {
			t.Fatal(err)
		}
		n++
		return before - gap()
	}
	// A record's size is a fixed part and the user id.
	d2, d3 := track("m1"), track("m12")
	base := d2 - 2
	if d3 != base+3 {
		t.Fatalf("records of 2- and 3-byte users take %d and %d bytes: not a fixed part and the id", d2, d3)
	}
	for gap() > base+120 { // the last id stays under 128 bytes: one byte of length
		track(fmt.Sprintf("f%05d", n))
	}
	last := gap() - base
	if last < 1 || last > 127 {
		t.Fatalf("cannot close a gap of %d bytes with one record", gap())
	}
	track(strings.Repeat("z", int(last)))
	if g := gap(); g != 0 {
		t.Fatalf("gap %d after the last record, want 0", g)
	}
	if wrote, err := l.snapshotIfChanged(); err != nil || !wrote {
		t.Fatalf("log grown by exactly the snapshot's size: wrote %v, %v; want written", wrote, err)
	}
}
