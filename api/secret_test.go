package api

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/impressiond/impressiond/store"
	"github.com/impressiond/impressiond/tracker"
)

func (ts *testServer) secret() [16]byte { return ts.dedup.Hasher().Secret() }

// dirSecret reads the secret file of the data directory dir, which no
// server holds.
func dirSecret(t *testing.T, dir string) [16]byte {
	t.Helper()
	d, err := store.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s, ok, err := d.Secret()
	if err != nil || !ok {
		t.Fatalf("secret file of %s: %v, present %v", dir, err, ok)
	}
	return s
}

// TestSecretIsPerDirectory: New writes the secret file before the first
// record; it is the window's, differs between directories, and comes back
// on every restart, from the log or a snapshot, in both modes.
func TestSecretIsPerDirectory(t *testing.T) {
	memoryOnly(t, "persistence to -data-dir")
	for _, mode := range []string{"bloom", "exact"} {
		t.Run(mode, func(t *testing.T) {
			dir, other := t.TempDir(), t.TempDir()
			clock := &fakeClock{t: testNow}
			a := durableServer(t, mode, dir, clock, time.Second)
			secret := a.secret()
			if got, err := os.ReadFile(filepath.Join(dir, "SECRET")); err != nil || len(got) == 0 {
				t.Fatalf("no secret file before the first record: %v", err)
			}
			if !a.srv.Tracker().Restored().NewSecret {
				t.Fatal("Restored().NewSecret is false for a new directory")
			}
			b := durableServer(t, mode, other, clock, time.Second)
			if b.secret() == secret {
				t.Fatal("two data directories share a secret")
			}
			if err := b.srv.Close(); err != nil {
				t.Fatal(err)
			}
			pairs := load(a)
			if err := a.srv.Close(); err != nil { // log only
				t.Fatal(err)
			}
			if got := dirSecret(t, dir); got != secret {
				t.Fatalf("secret file %x, window's %x", got, secret)
			}
			a = durableServer(t, mode, dir, clock, time.Second)
			if a.secret() != secret || a.srv.Tracker().Restored().NewSecret {
				t.Fatalf("after a restart from the log: secret %x (new %v), want %x", a.secret(), a.srv.Tracker().Restored().NewSecret, secret)
			}
			a.dupAll(pairs)
			if err := a.srv.Shutdown(t.Context()); err != nil { // snapshot
				t.Fatal(err)
			}
			a = durableServer(t, mode, dir, clock, time.Second)
			if a.secret() != secret {
				t.Fatalf("after a restart from a snapshot: secret %x, want %x", a.secret(), secret)
			}
			a.dupAll(pairs)
		})
	}
}

// TestSnapshotRestoresSecret: a snapshot copied alone into an empty
// directory, as from a backup, brings its secret back: its pairs are
// still duplicates, and the secret file is written again.
func TestSnapshotRestoresSecret(t *testing.T) {
	memoryOnly(t, "persistence to -data-dir")
	dir, restored := t.TempDir(), t.TempDir()
	clock := &fakeClock{t: testNow}
	a := durableServer(t, "bloom", dir, clock, time.Second)
	secret := a.secret()
	pairs := load(a)
	if err := a.srv.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	snaps, _ := filepath.Glob(filepath.Join(dir, "snapshot-*"))
	if len(snaps) != 1 {
		t.Fatalf("snapshots %v, want one", snaps)
	}
	b, err := os.ReadFile(snaps[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(restored, filepath.Base(snaps[0])), b, 0o644); err != nil {
		t.Fatal(err)
	}

	r := durableServer(t, "bloom", restored, clock, time.Second)
	if r.secret() != secret {
		t.Fatalf("restored secret %x, want the snapshot's %x", r.secret(), secret)
	}
	r.dupAll(pairs)
	if err := r.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if got := dirSecret(t, restored); got != secret {
		t.Fatalf("secret file after the restore %x, want %x", got, secret)
	}
}

// TestSecretMismatchRefused: a secret file and a snapshot of different
// directories stop the start-up, naming both.
func TestSecretMismatchRefused(t *testing.T) {
	memoryOnly(t, "persistence to -data-dir")
	dir, other := t.TempDir(), t.TempDir()
	clock := &fakeClock{t: testNow}
	a := durableServer(t, "bloom", dir, clock, time.Second)
	load(a)
	if err := a.srv.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := durableServer(t, "bloom", other, clock, time.Second).srv.Close(); err != nil {
		t.Fatal(err)
	}
	foreign, err := os.ReadFile(filepath.Join(other, "SECRET"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "SECRET"), foreign, 0o600); err != nil {
		t.Fatal(err)
	}

	_, err = newServer(testOptions{coreOptions: coreOptions{Dedup: newDedup(t, "bloom", 100000), DataDir: dir, Now: clock.Now}})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "SECRET")) || !strings.Contains(err.Error(), "snapshot-") {
		t.Fatalf("New = %v, want a refusal naming the secret file and the snapshot", err)
	}
}

// TestUnkeyedDataRefused: a directory of an earlier version (no secret
// file, murmur3 keys) is refused in bloom mode and taken over in exact
// mode, whose data holds no hash, as the server answers it. Here the
// directory holds the log alone; the tracker's tests of the same name
// also restore snapshots in an earlier version's encoding, which only
// the tracker can write.
func TestUnkeyedDataRefused(t *testing.T) {
	memoryOnly(t, "persistence to -data-dir")
	clock := &fakeClock{t: testNow}
	earlier := func(t *testing.T, mode string, snapshot bool) (string, []string) {
		dir := t.TempDir()
		a := durableServer(t, mode, dir, clock, time.Second)
		pairs := load(a)
		if err := a.srv.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(dir, "SECRET")); err != nil {
			t.Fatal(err)
		}
		return dir, pairs
	}
	for _, snapshot := range []bool{false} {
		name := map[bool]string{false: "log", true: "snapshot"}[snapshot]
		t.Run("bloom/"+name, func(t *testing.T) {
			dir, _ := earlier(t, "bloom", snapshot)
			_, err := newServer(testOptions{coreOptions: coreOptions{Dedup: newDedup(t, "bloom", 100000), DataDir: dir, Now: clock.Now}})
			if !errors.Is(err, tracker.ErrUnkeyedData) || !strings.Contains(err.Error(), "DURABILITY.md") {
				t.Fatalf("New = %v, want tracker.ErrUnkeyedData pointing to the upgrade notes", err)
			}
			if _, err := os.Stat(filepath.Join(dir, "SECRET")); err == nil {
				t.Fatal("a refused start wrote a secret file")
			}
		})
		t.Run("bloom/"+name+"/reset", func(t *testing.T) {
			dir, pairs := earlier(t, "bloom", snapshot)
			b := newTestServer(t, "bloom", func(o *testOptions) {
				o.DataDir, o.ResetDedup, o.Now = dir, true, clock.Now
				o.FsyncInterval, o.SnapshotInterval = time.Second, time.Hour
			})
			st := b.srv.Tracker().Restored()
			if st.DedupReset == "" || !st.NewSecret || st.Campaigns != 3 {
				t.Fatalf("restored %+v; want the window reset, a new secret, the 3 campaigns", st)
			}
			// The counts survive; the window starts empty, so every pair
			// counted before is counted once more, and only once.
			for _, id := range []string{"alpha", "beta", "gamma"} {
				if b.stats(id).Total == 0 {
					t.Fatalf("campaign %s lost its counts", id)
				}
			}
			seen := map[string]bool{}
			for _, p := range pairs {
				c, u, _ := strings.Cut(p, "/")
				r := b.do("POST", "/api/v1/impressions", track(c, u)).want(t, 200)
				if got := strings.Contains(string(r.body), `"counted"`); got == seen[p] {
					t.Fatalf("%s after the reset: %s, want counted once, then duplicate", p, r.body)
				}
				seen[p] = true
			}
			if err := b.srv.Close(); err != nil {
				t.Fatal(err)
			}
			// The reset start wrote a keyed snapshot: the next start needs
			// no flag and keeps this run's pairs.
			c := durableServer(t, "bloom", dir, clock, time.Second)
			if c.srv.Tracker().Restored().DedupReset != "" {
				t.Fatal("a second start reset the window again")
			}
			c.dupAll(pairs)
		})
		t.Run("exact/"+name, func(t *testing.T) {
			dir, pairs := earlier(t, "exact", snapshot)
			b := durableServer(t, "exact", dir, clock, time.Second)
			if !b.srv.Tracker().Restored().NewSecret {
				t.Fatal("no new secret for an exact directory without one")
			}
			b.dupAll(pairs)
		})
	}
}
