package tracker

import (
	"bytes"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/impressiond/impressiond/store"
)

// Unit tests of the defaults Open fills in.

// plainFile is a log segment file that cannot reserve space: it hides
// the *os.File's other methods.
type plainFile struct{ f *os.File }

func (p plainFile) Write(b []byte) (int, error) { return p.f.Write(b) }
func (p plainFile) Sync() error                 { return p.f.Sync() }
func (p plainFile) Close() error                { return p.f.Close() }

func openPlain(path string) (store.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	return plainFile{f}, nil
}

// TestOpenLogsToLogger: what the operator should know goes to
// Options.Logger (here: a file system that cannot reserve space), and a
// durable tracker with the zero SnapshotInterval runs on the default one.
func TestOpenLogsToLogger(t *testing.T) {
	clock := &fakeClock{t: suiteNow(t)}
	var buf bytes.Buffer
	tr, err := Open(Options{
		Dedup: newDedup(t, "exact", 0), DataDir: t.TempDir(), Now: clock.Now,
		Logger: slog.New(slog.NewTextHandler(&buf, nil)), OpenLogFile: openPlain, LogReserve: 1 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	create(t, tr, "c", clock.Now())
	if _, err := tr.Track(imp("c", "u")); err != nil {
		t.Fatal(err)
	}
	if err := tr.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "cannot reserve space") {
		t.Fatalf("the logger got %q, want the warning that space cannot be reserved", buf.String())
	}
	// A final snapshot that succeeded is not reported as failed.
	if strings.Contains(buf.String(), "snapshot failed") {
		t.Fatalf("the logger got %q after a good final snapshot", buf.String())
	}
}

// TestDefaultLogger: without Options.Logger the default logger serves.
func TestDefaultLogger(t *testing.T) {
	clock := &fakeClock{t: suiteNow(t)}
	var buf bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	defer slog.SetDefault(old)
	tr, err := Open(Options{Dedup: newDedup(t, "exact", 0), DataDir: t.TempDir(), Now: clock.Now, OpenLogFile: openPlain, LogReserve: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "cannot reserve space") {
		t.Fatalf("the default logger got %q", buf.String())
	}
}

// TestDefaultSnapshotInterval: a durable tracker opened with the zero
// SnapshotInterval runs (on the default interval) and restarts.
func TestDefaultSnapshotInterval(t *testing.T) {
	clock := &fakeClock{t: suiteNow(t)}
	dir := t.TempDir()
	tr, err := Open(Options{Dedup: newDedup(t, "bloom", 0), DataDir: dir, Now: clock.Now, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if st := tr.Restored(); st.DedupReset != "" || !st.NewSecret {
		t.Fatalf("a new bloom directory restored %+v", st)
	}
	create(t, tr, "c", clock.Now())
	if err := tr.Shutdown(); err != nil {
		t.Fatal(err)
	}
	again := openDir(t, "bloom", dir, clock, func(o *Options) { o.SnapshotInterval = 0 })
	if st := again.Restored(); st.Campaigns != 1 {
		t.Fatalf("restored %+v", st)
	}
}

// TestResetOnNewDirectory: ResetDedup on a directory with nothing to
// reset resets nothing.
func TestResetOnNewDirectory(t *testing.T) {
	clock := &fakeClock{t: suiteNow(t)}
	for _, mode := range []string{"bloom", "exact"} {
		tr := openDir(t, mode, t.TempDir(), clock, func(o *Options) { o.ResetDedup = true })
		if st := tr.Restored(); st.DedupReset != "" || !st.NewSecret || st.Snapshot != "" {
			t.Fatalf("%s: a new directory with ResetDedup restored %+v", mode, st)
		}
	}
}
