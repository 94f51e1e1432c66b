package tracker

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/impressiond/impressiond/sketch"
	"github.com/impressiond/impressiond/store"
)

// Unit tests of how Open decides a data directory's secret (adoptSecret):
// the snapshot's, the secret file's, or a new one, and when it refuses.

// secretFile reads the secret file of dir, which no tracker holds.
func secretFile(t *testing.T, dir string) ([16]byte, bool) {
	t.Helper()
	d, err := store.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s, ok, err := d.Secret()
	if err != nil {
		t.Fatal(err)
	}
	return s, ok
}

// writeSecret gives dir a secret file holding secret.
func writeSecret(t *testing.T, dir string, secret [16]byte) {
	t.Helper()
	d, err := store.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.CreateSecret(secret); err != nil {
		t.Fatal(err)
	}
}

// openWith opens a durable tracker of mode on dir with a window the test
// keeps, to read the secret it was keyed with.
func openWith(t *testing.T, mode, dir string, clock *fakeClock, reset bool) (*Tracker, sketch.Deduper) {
	t.Helper()
	d := newDedup(t, mode, 0)
	tr := openDir(t, mode, dir, clock, func(o *Options) { o.Dedup, o.ResetDedup = d, reset })
	return tr, d
}

// earlierDir writes a directory as an earlier version left it: no secret
// file and, with snapshot, a snapshot whose meta section holds only the
// time. It returns the pairs counted.
func earlierDir(t *testing.T, mode string, clock *fakeClock, snapshot bool) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	tr := openDir(t, mode, dir, clock, nil)
	pairs := fillEarlier(t, tr, clock)
	stop := tr.Close
	if snapshot {
		stop = tr.Shutdown
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if snapshot {
		unkeySnapshot(t, dir)
	}
	if err := os.Remove(filepath.Join(dir, "SECRET")); err != nil {
		t.Fatal(err)
	}
	return dir, pairs
}

// fillEarlier is fill with the campaigns keyed in dedup as an earlier
// version keyed them, by their ids alone.
func fillEarlier(t *testing.T, tr *Tracker, clock *fakeClock) []string {
	t.Helper()
	tail := newKeyTail
	newKeyTail = func() string { return "" }
	defer func() { newKeyTail = tail }()
	return fill(t, tr, clock)
}

// campaignsV1 re-encodes a campaigns section of version 4 whose key tails
// are empty as version 1, which has no end, no tail and no duplicates.
func campaignsV1(t *testing.T, b []byte) []byte {
	t.Helper()
	n, k := binary.Uvarint(b)
	b = b[k:]
	out := binary.AppendUvarint(nil, n)
	str := func() []byte {
		l, k := binary.Uvarint(b)
		s := b[:k+int(l)]
		b = b[k+int(l):]
		return s
	}
	for range n {
		_, k := binary.Uvarint(b)
		out = append(out, b[:k]...)
		b = b[k:]
		out = append(out, str()...) // id
		out = append(out, str()...) // name
		out = append(out, b[:8]...) // start
		b = b[8:]
		if b[0] != 0 {
			t.Fatal("campaignsV1: a campaign with an end")
		}
		b = b[1:]
		if tail := str(); len(tail) != 1 {
			t.Fatal("campaignsV1: a campaign with a key tail")
		}
		size := int(binary.LittleEndian.Uint32(b))
		out = append(out, b[:4+size]...)
		b = b[4+size:]
		b = b[4+int(binary.LittleEndian.Uint32(b)):] // the duplicates and history, which version 1 has not
		b = b[4+int(binary.LittleEndian.Uint32(b)):]
		b = b[4+int(binary.LittleEndian.Uint32(b)):] // the reach and ads, which version 3 added
		ads, k := binary.Uvarint(b)
		b = b[k:]
		for range ads {
			str()
			b = b[4+int(binary.LittleEndian.Uint32(b)):]
		}
		b = b[4+int(binary.LittleEndian.Uint32(b)):]
		if b[0] != 0 {
			t.Fatal("campaignsV1: a campaign with frequency caps") // version 4's
		}
		b = b[1:]
	}
	if len(b) != 0 {
		t.Fatal("campaignsV1: trailing bytes")
	}
	return out
}

// unkeySnapshot rewrites dir's snapshot as an earlier version wrote it:
// the meta section holds the time only, the campaigns are of version 1.
func unkeySnapshot(t *testing.T, dir string) {
	t.Helper()
	d, err := store.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	seg, _, _ := d.LatestSnapshot()
	r, err := d.OpenSnapshot(seg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var sections [3][]byte
	for i, kind := range []byte{sectionMeta, sectionCampaigns, sectionDedup} {
		err := r.Section(kind, func(rd io.Reader) (err error) { sections[i], err = io.ReadAll(rd); return err })
		if err != nil {
			t.Fatal(err)
		}
	}
	sections[0] = sections[0][:8]
	sections[1] = campaignsV1(t, sections[1])
	w, err := d.CreateSnapshot(seg)
	if err != nil {
		t.Fatal(err)
	}
	for i, kind := range []byte{sectionMeta, sectionCampaigns, sectionDedup} {
		if err := w.Section(kind, func(wr io.Writer) error { _, err := wr.Write(sections[i]); return err }); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// dupAll asserts every pair is a duplicate.
func dupAll(t *testing.T, tr *Tracker, pairs []string) {
	t.Helper()
	for _, p := range pairs {
		c, u, _ := strings.Cut(p, "/")
		if dup, err := tr.Track(imp(c, u)); err != nil || !dup {
			t.Fatalf("%s: %v, %v; want duplicate", p, dup, err)
		}
	}
}

// TestSecretIsPerDirectory: a new directory draws the window's secret and
// writes it to its secret file before the first record; two directories
// differ; a restart from the log or from a snapshot keys the window with
// it again, in both modes.
func TestSecretIsPerDirectory(t *testing.T) {
	for _, mode := range []string{"bloom", "exact"} {
		t.Run(mode, func(t *testing.T) {
			dir, other := t.TempDir(), t.TempDir()
			clock := &fakeClock{t: suiteNow(t)}
			a, d := openWith(t, mode, dir, clock, false)
			secret := d.Hasher().Secret()
			if !a.Restored().NewSecret {
				t.Fatal("Restored().NewSecret is false for a new directory")
			}
			b, bd := openWith(t, mode, other, clock, false)
			if bd.Hasher().Secret() == secret {
				t.Fatal("two data directories share a secret")
			}
			b.Close()
			pairs := fill(t, a, clock)
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			if got, ok := secretFile(t, dir); !ok || got != secret {
				t.Fatalf("secret file %x (present %v), window's %x", got, ok, secret)
			}
			a, d = openWith(t, mode, dir, clock, false)
			if d.Hasher().Secret() != secret || a.Restored().NewSecret {
				t.Fatalf("after a restart from the log: secret %x (new %v), want %x", d.Hasher().Secret(), a.Restored().NewSecret, secret)
			}
			dupAll(t, a, pairs)
			if err := a.Shutdown(); err != nil {
				t.Fatal(err)
			}
			a, d = openWith(t, mode, dir, clock, false)
			if d.Hasher().Secret() != secret || a.Restored().NewSecret || a.Restored().Snapshot == "" {
				t.Fatalf("after a restart from a snapshot: secret %x, want %x (%+v)", d.Hasher().Secret(), secret, a.Restored())
			}
			dupAll(t, a, pairs)
		})
	}
}

// TestSnapshotBringsSecret: a snapshot copied alone into an empty
// directory, as from a backup, keys the window with its secret, its pairs
// are duplicates, and the secret file is written again.
func TestSnapshotBringsSecret(t *testing.T) {
	for _, mode := range []string{"bloom", "exact"} {
		t.Run(mode, func(t *testing.T) {
			dir, restored := t.TempDir(), t.TempDir()
			clock := &fakeClock{t: suiteNow(t)}
			a, d := openWith(t, mode, dir, clock, false)
			secret := d.Hasher().Secret()
			pairs := fill(t, a, clock)
			if err := a.Shutdown(); err != nil {
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
			r, rd := openWith(t, mode, restored, clock, false)
			if rd.Hasher().Secret() != secret || r.Restored().NewSecret {
				t.Fatalf("restored secret %x (new %v), want the snapshot's %x", rd.Hasher().Secret(), r.Restored().NewSecret, secret)
			}
			dupAll(t, r, pairs)
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			if got, ok := secretFile(t, restored); !ok || got != secret {
				t.Fatalf("secret file after the restore %x (present %v), want %x", got, ok, secret)
			}
		})
	}
}

// TestSecretMismatchRefused: a secret file and a snapshot of different
// directories stop Open, naming both, and change neither.
func TestSecretMismatchRefused(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	clock := &fakeClock{t: suiteNow(t)}
	a := openDir(t, "bloom", dir, clock, nil)
	fill(t, a, clock)
	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := openDir(t, "bloom", other, clock, nil).Close(); err != nil {
		t.Fatal(err)
	}
	foreign, err := os.ReadFile(filepath.Join(other, "SECRET"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "SECRET"), foreign, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"bloom", "exact"} {
		err = openDirErr(t, mode, dir, clock, nil)
		if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "SECRET")) || !strings.Contains(err.Error(), "snapshot-") {
			t.Fatalf("%s: Open = %v, want a refusal naming the secret file and the snapshot", mode, err)
		}
	}
	if got, err := os.ReadFile(filepath.Join(dir, "SECRET")); err != nil || string(got) != string(foreign) {
		t.Fatal("a refused Open changed the secret file")
	}
}

// TestUnkeyedDataRefused: in bloom mode a directory of an earlier version
// (no secret file; keys hashed without a secret) is refused with
// ErrUnkeyedData, from a snapshot or from the log alone, and no secret
// file is written.
func TestUnkeyedDataRefused(t *testing.T) {
	clock := &fakeClock{t: suiteNow(t)}
	for _, snapshot := range []bool{false, true} {
		name := map[bool]string{false: "log", true: "snapshot"}[snapshot]
		t.Run(name, func(t *testing.T) {
			dir, _ := earlierDir(t, "bloom", clock, snapshot)
			err := openDirErr(t, "bloom", dir, clock, nil)
			if !errors.Is(err, ErrUnkeyedData) || !strings.Contains(err.Error(), "DURABILITY.md") || !strings.Contains(err.Error(), "-dedup-reset") {
				t.Fatalf("Open = %v, want ErrUnkeyedData pointing to the upgrade notes", err)
			}
			if _, ok := secretFile(t, dir); ok {
				t.Fatal("a refused Open wrote a secret file")
			}
		})
	}
	// A Bloom snapshot without a secret is refused even when a secret file
	// is present: its keys were not hashed with that secret.
	t.Run("snapshot and secret file", func(t *testing.T) {
		dir, _ := earlierDir(t, "bloom", clock, true)
		writeSecret(t, dir, [16]byte{1})
		if err := openDirErr(t, "bloom", dir, clock, nil); !errors.Is(err, ErrUnkeyedData) {
			t.Fatalf("Open = %v, want ErrUnkeyedData", err)
		}
	})
}

// TestUnkeyedDataReset: with ResetDedup an earlier version's Bloom
// directory opens with an empty window and a new secret, keeping the
// campaigns and counts; each pair counted before counts once more, then
// is a duplicate; the snapshot written at once makes the next start need
// no reset and keep this run's pairs.
func TestUnkeyedDataReset(t *testing.T) {
	for _, snapshot := range []bool{false, true} {
		name := map[bool]string{false: "log", true: "snapshot"}[snapshot]
		t.Run(name, func(t *testing.T) {
			clock := &fakeClock{t: suiteNow(t)}
			dir, pairs := earlierDir(t, "bloom", clock, snapshot)
			tr, d := openWith(t, "bloom", dir, clock, true)
			st := tr.Restored()
			want := map[bool]string{false: "log segments but no secret file", true: "holds no secret"}[snapshot]
			if !strings.Contains(st.DedupReset, want) || !st.NewSecret || st.Campaigns != 2 || st.Took <= 0 {
				t.Fatalf("restored %+v; want the window reset (%q), a new secret, the 2 campaigns", st, want)
			}
			if a, b := total(t, tr, "alpha"), total(t, tr, "beta"); a != 10 || b != 20 {
				t.Fatalf("totals alpha %d, beta %d; want 10, 20", a, b)
			}
			for _, p := range pairs {
				c, u, _ := strings.Cut(p, "/")
				if dup, err := tr.Track(imp(c, u)); err != nil || dup {
					t.Fatalf("%s after the reset: %v, %v; want counted", p, dup, err)
				}
			}
			dupAll(t, tr, pairs)
			secret := d.Hasher().Secret()
			if err := tr.Close(); err != nil {
				t.Fatal(err)
			}
			if got, ok := secretFile(t, dir); !ok || got != secret {
				t.Fatalf("secret file %x (present %v), want the new secret %x", got, ok, secret)
			}
			again, d := openWith(t, "bloom", dir, clock, false)
			if st := again.Restored(); st.DedupReset != "" || st.NewSecret || d.Hasher().Secret() != secret {
				t.Fatalf("second start: %+v", st)
			}
			dupAll(t, again, pairs)
		})
	}
}

// TestExactTakesOverUnkeyed: exact mode's snapshots and log hold the
// pairs themselves, so an earlier version's exact directory opens without
// a reset: a new secret, every pair still a duplicate.
func TestExactTakesOverUnkeyed(t *testing.T) {
	for _, snapshot := range []bool{false, true} {
		name := map[bool]string{false: "log", true: "snapshot"}[snapshot]
		t.Run(name, func(t *testing.T) {
			clock := &fakeClock{t: suiteNow(t)}
			dir, pairs := earlierDir(t, "exact", clock, snapshot)
			tr, d := openWith(t, "exact", dir, clock, false)
			if st := tr.Restored(); !st.NewSecret || st.DedupReset != "" || st.Campaigns != 2 {
				t.Fatalf("restored %+v; want a new secret and nothing reset", st)
			}
			dupAll(t, tr, pairs)
			secret := d.Hasher().Secret()
			if err := tr.Close(); err != nil {
				t.Fatal(err)
			}
			if got, ok := secretFile(t, dir); !ok || got != secret {
				t.Fatalf("secret file %x (present %v), want %x", got, ok, secret)
			}
		})
	}
	// An unkeyed exact snapshot beside a secret file takes the file's.
	t.Run("snapshot and secret file", func(t *testing.T) {
		clock := &fakeClock{t: suiteNow(t)}
		dir, pairs := earlierDir(t, "exact", clock, true)
		var secret [16]byte
		secret[0] = 7
		writeSecret(t, dir, secret)
		tr, d := openWith(t, "exact", dir, clock, false)
		if tr.Restored().NewSecret || d.Hasher().Secret() != secret {
			t.Fatalf("secret %x (new %v), want the file's %x", d.Hasher().Secret(), tr.Restored().NewSecret, secret)
		}
		dupAll(t, tr, pairs)
	})
}

// TestDedupMustBeNew: a window that already holds pairs cannot be keyed
// with the directory's secret: Open refuses it.
func TestDedupMustBeNew(t *testing.T) {
	clock := &fakeClock{t: suiteNow(t)}
	for _, mode := range []string{"bloom", "exact"} {
		d := newDedup(t, mode, 0)
		d.TestAndAdd([]byte("c"), []byte("u"), clock.Now())
		err := openDirErr(t, mode, t.TempDir(), clock, func(o *Options) { o.Dedup = d })
		if err == nil || !strings.Contains(err.Error(), "must be a new window") {
			t.Fatalf("%s: Open with a used window = %v", mode, err)
		}
	}
}
