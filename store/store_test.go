package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func openTestDir(t *testing.T) *Dir {
	t.Helper()
	d, err := OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil && !errors.Is(err, os.ErrClosed) { // a test may close it first
			t.Error(err)
		}
	})
	return d
}

// writeFile is os.WriteFile that fails the test on an error.
func writeFile(t testing.TB, path string, b []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, b, perm); err != nil {
		t.Fatal(err)
	}
}

// readFile is os.ReadFile that fails the test on an error.
func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var t0 = time.Date(2026, 11, 26, 10, 30, 15, 123456789, time.UTC)

// sampleBatch holds one record of each shape.
func sampleBatch() *Batch {
	var b Batch
	b.AddCampaign(7, "summer-sale", "Summer sale ☀", t0.Add(-time.Hour))
	b.AddImpression(7, t0, unixMinute(t0.UnixNano())-3, 0x0123456789abcdef, 0xfedcba9876543210, nil, nil)
	b.AddImpression(7, t0.Add(time.Second), unixMinute(t0.UnixNano()), 0, 0, []byte("user-42"), nil)
	b.AddImpression(1<<31, t0.Add(2*time.Second), unixMinute(t0.UnixNano()), 0, 0, []byte{}, nil)
	return &b
}

func wantSample() []Record {
	m := unixMinute(t0.UnixNano())
	return []Record{
		{Kind: KindCampaign, Campaign: 7, ID: []byte("summer-sale"), Name: []byte("Summer sale ☀"), Start: t0.Add(-time.Hour)},
		{Kind: KindImpression, Campaign: 7, Arrival: t0, Minute: m - 3, KeyLo: 0x0123456789abcdef, KeyHi: 0xfedcba9876543210},
		{Kind: KindImpression, Campaign: 7, Arrival: t0.Add(time.Second), Minute: m, User: []byte("user-42")},
		{Kind: KindImpression, Campaign: 1 << 31, Arrival: t0.Add(2 * time.Second), Minute: m, User: []byte{}},
	}
}

// collect replays d from segment 0 and returns deep copies of the records.
func collect(t *testing.T, d *Dir) ([]Record, ReplayStats, error) {
	t.Helper()
	var got []Record
	st, err := d.Replay(0, func(r *Record) error {
		c := *r
		c.ID, c.Name = clone(r.ID), clone(r.Name)
		c.User = clone(r.User)
		got = append(got, c)
		return nil
	})
	return got, st, err
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

func sameRecords(t *testing.T, got, want []Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if !g.Start.Equal(w.Start) || !g.Arrival.Equal(w.Arrival) {
			t.Fatalf("record %d: times %v/%v, want %v/%v", i, g.Start, g.Arrival, w.Start, w.Arrival)
		}
		g.Start, w.Start, g.Arrival, w.Arrival = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("record %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
}

func TestLogRoundTrip(t *testing.T) {
	for _, interval := range []time.Duration{0, time.Millisecond, time.Hour} {
		t.Run(fmt.Sprint(interval), func(t *testing.T) {
			d := openTestDir(t)
			l, err := OpenLog(d, 1, Options{FsyncInterval: interval})
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Append(sampleBatch()); err != nil {
				t.Fatal(err)
			}
			seg, err := l.Rotate()
			if err != nil || seg != 2 {
				t.Fatalf("Rotate = %d, %v; want 2, nil", seg, err)
			}
			if err := l.Append(sampleBatch()); err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if st := l.Stats(); st.Records != 8 {
				t.Fatalf("Stats().Records = %d, want 8", st.Records)
			}
			got, st, err := collect(t, d)
			if err != nil {
				t.Fatal(err)
			}
			sameRecords(t, got, append(wantSample(), wantSample()...))
			if st.Segments != 2 || st.Records != 8 || st.Torn != nil {
				t.Fatalf("stats %+v, want 2 segments, 8 records, no torn tail", st)
			}
			if err := l.Append(sampleBatch()); !errors.Is(err, ErrClosed) {
				t.Fatalf("Append after Close = %v, want ErrClosed", err)
			}
		})
	}
}

// TestLogConcurrentAppend: every record of many concurrent appenders is
// replayed exactly once, each appender's in its order.
func TestLogConcurrentAppend(t *testing.T) {
	d := openTestDir(t)
	l, err := OpenLog(d, 1, Options{FsyncInterval: 0, QueueLen: 4})
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 200
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b Batch
			for i := range each {
				b.Reset()
				b.AddImpression(uint32(w), t0, 0, uint64(i), 0, nil, nil)
				if err := l.Append(&b); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if _, err := l.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	next := make([]uint64, writers)
	_, err = d.Replay(0, func(r *Record) error {
		if r.KeyLo != next[r.Campaign] {
			return fmt.Errorf("writer %d: record %d, want %d", r.Campaign, r.KeyLo, next[r.Campaign])
		}
		next[r.Campaign]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for w, n := range next {
		if n != each {
			t.Fatalf("writer %d: %d records replayed, want %d", w, n, each)
		}
	}
}

// writeSegments writes the sample into segment 1, rotates, writes it into
// segment 2, and returns the path of segment 2.
func writeSegments(t *testing.T, d *Dir) string {
	t.Helper()
	l, err := OpenLog(d, 1, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(sampleBatch()); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(sampleBatch()); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return d.segmentPath(2)
}

// TestReplayTornTail cuts the newest segment at every length: the records
// before the cut replay, the cut one is reported and truncated away, and a
// second replay is clean.
func TestReplayTornTail(t *testing.T) {
	d := openTestDir(t)
	path := writeSegments(t, d)
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ends := recordEnds(t, full)
	for cut := len(full) - 1; cut >= 0; cut-- {
		if err := os.WriteFile(path, full[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		got, st, err := collect(t, d)
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		whole := 0
		for _, e := range ends {
			if e <= cut {
				whole++
			}
		}
		sameRecords(t, got, append(wantSample(), wantSample()[:whole]...))
		atBoundary := cut == walHeader || (whole > 0 && ends[whole-1] == cut)
		if atBoundary != (st.Torn == nil) {
			t.Fatalf("cut at %d: torn = %v, want torn %v", cut, st.Torn, !atBoundary)
		}
		if _, st2, err := collect(t, d); err != nil || st2.Torn != nil {
			t.Fatalf("cut at %d: second replay: torn %v, err %v; want a clean log", cut, st2.Torn, err)
		}
		if cut < walHeader {
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Fatalf("cut at %d: segment without a header still exists", cut)
			}
		}
	}
}

func recordEnds(t *testing.T, seg []byte) []int {
	var ends []int
	for off := walHeader; off < len(seg); {
		off += recordHeader + int(seg[off+4]) | int(seg[off+5])<<8
		ends = append(ends, off)
	}
	return ends
}

// TestReplayCorruption flips every byte of both segments in turn. A flip
// in the newest segment's last record leaves a garbled tail, which is cut
// as a torn write; every other one is refused with the file and the offset
// of the damaged record.
func TestReplayCorruption(t *testing.T) {
	d := openTestDir(t)
	writeSegments(t, d)
	for _, seg := range []uint64{1, 2} {
		path := d.segmentPath(seg)
		full := readFile(t, path)
		ends := recordEnds(t, full)
		lastStart := ends[len(ends)-2]
		for i := range full {
			bad := bytes.Clone(full)
			bad[i] ^= 0x20
			writeFile(t, path, bad, 0o644)
			got, st, err := collect(t, d)
			var ce *CorruptError
			if seg == 2 && i >= lastStart {
				if err != nil || st.Torn == nil || st.Torn.Offset != int64(lastStart) {
					t.Fatalf("segment 2, byte %d of its last record flipped: err %v, torn %v; want a torn tail at %d", i, err, st.Torn, lastStart)
				}
				sameRecords(t, got, append(wantSample(), wantSample()[:len(ends)-1]...))
				writeFile(t, path, full, 0o644)
				continue
			}
			switch {
			case st.Torn != nil:
				t.Fatalf("segment %d, byte %d flipped: taken for a torn write: %v", seg, i, st.Torn)
			case !errors.As(err, &ce):
				t.Fatalf("segment %d, byte %d flipped: err %v, want a CorruptError", seg, i, err)
			case ce.File != path:
				t.Fatalf("segment %d, byte %d flipped: file %q, want %q", seg, i, ce.File, path)
			case i >= walHeader && (ce.Offset > int64(i) || int64(i)-ce.Offset >= 64):
				t.Fatalf("segment %d, byte %d flipped: offset %d, want the start of its record", seg, i, ce.Offset)
			}
			writeFile(t, path, full, 0o644)
		}
	}
}

func TestReplayVersionMismatch(t *testing.T) {
	d := openTestDir(t)
	path := writeSegments(t, d)
	b := readFile(t, path)
	b[len(walMagic)] = 9
	writeFile(t, path, b, 0o644)
	_, _, err := collect(t, d)
	if !errors.Is(err, ErrVersion) {
		t.Fatalf("err = %v, want ErrVersion", err)
	}
	if want := "log segment version 9, this build reads version 1"; !bytes.Contains([]byte(err.Error()), []byte(want)) {
		t.Fatalf("err = %q, want it to say %q", err, want)
	}
}

// TestReplayTornGarbage: zeros (as a power loss leaves on some file
// systems) or garbage after the newest segment's last valid record are a
// torn write: cut with the file, offset and bytes dropped named, the
// records before kept, and the next replay clean.
func TestReplayTornGarbage(t *testing.T) {
	tails := map[string][]byte{
		"zeros":   make([]byte, 4096),
		"garbage": bytes.Repeat([]byte("\x13\x37garbage\xff"), 300),
		"a zero":  {0},
	}
	for name, tail := range tails {
		t.Run(name, func(t *testing.T) {
			d := openTestDir(t)
			path := writeSegments(t, d)
			full := readFile(t, path)
			writeFile(t, path, append(bytes.Clone(full), tail...), 0o644)
			got, st, err := collect(t, d)
			if err != nil {
				t.Fatalf("replay: %v, want the tail cut", err)
			}
			sameRecords(t, got, append(wantSample(), wantSample()...))
			if st.Torn == nil || st.Torn.File != path || st.Torn.Offset != int64(len(full)) {
				t.Fatalf("torn = %v, want a torn tail in %s at %d", st.Torn, path, len(full))
			}
			if want := fmt.Sprintf("%d bytes dropped", len(tail)); !strings.Contains(st.Torn.Error(), want) {
				t.Fatalf("torn = %q, want it to say %q", st.Torn, want)
			}
			if b := readFile(t, path); !bytes.Equal(b, full) {
				t.Fatalf("segment is %d bytes after the cut, want %d", len(b), len(full))
			}
			if _, st2, err := collect(t, d); err != nil || st2.Torn != nil {
				t.Fatalf("second replay: torn %v, err %v; want a clean log", st2.Torn, err)
			}
		})
	}
}

// TestReplayDamageBeforeValidRecords: zeros over a record of the newest
// segment that valid records follow are damage, not a torn write: refused,
// naming the damaged record and the valid one after it.
func TestReplayDamageBeforeValidRecords(t *testing.T) {
	d := openTestDir(t)
	path := writeSegments(t, d)
	full := readFile(t, path)
	ends := recordEnds(t, full)
	bad := bytes.Clone(full)
	clear(bad[ends[0]:ends[1]]) // the second record
	writeFile(t, path, bad, 0o644)
	_, st, err := collect(t, d)
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.File != path || ce.Offset != int64(ends[0]) || st.Torn != nil {
		t.Fatalf("err = %v, torn %v; want a CorruptError in %s at %d", err, st.Torn, path, ends[0])
	}
	if want := fmt.Sprintf("a valid record follows at offset %d", ends[1]); !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %q, want it to say %q", err, want)
	}
	// An older segment's zero tail is damage too: it was closed whole.
	d2 := openTestDir(t)
	writeSegments(t, d2)
	old := d2.segmentPath(1)
	writeFile(t, old, append(readFile(t, old), make([]byte, 4096)...), 0o644)
	if _, _, err := collect(t, d2); !errors.As(err, &ce) || ce.File != old {
		t.Fatalf("zero tail of an older segment: err = %v, want a CorruptError in %s", err, old)
	}
}

// TestReplayShortOlderSegment: only the newest segment may end in a torn
// record; an older one was closed and fsync'd, so a short one is damage.
func TestReplayShortOlderSegment(t *testing.T) {
	d := openTestDir(t)
	writeSegments(t, d)
	path := d.segmentPath(1)
	b := readFile(t, path)
	writeFile(t, path, b[:len(b)-3], 0o644)
	_, _, err := collect(t, d)
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.File != path {
		t.Fatalf("err = %v, want a CorruptError in %s", err, path)
	}
}

// failingFile fails every write and fsync while full is set, like a full
// disk, and works again once it is cleared.
type failingFile struct {
	*os.File
	full *bool
	mu   *sync.Mutex
}

func (f failingFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if *f.full {
		return 0, syscall.ENOSPC
	}
	return f.File.Write(p)
}

func (f failingFile) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if *f.full {
		return syscall.ENOSPC
	}
	return f.File.Sync()
}

// TestLogDiskFull: on a file system that cannot reserve space, a full disk
// fails Append and sets Err. An impression batch is kept and written once
// space is back; a campaign batch is retracted, never written. The log
// recovers by itself and every kept record is replayed once.
func TestLogDiskFull(t *testing.T) {
	d := openTestDir(t)
	var mu sync.Mutex
	full := false
	l, err := OpenLog(d, 1, Options{FsyncInterval: 0, OpenFile: func(p string) (File, error) {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		return failingFile{f, &full, &mu}, err
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(sampleBatch()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	full = true
	mu.Unlock()
	if err := l.Append(sampleBatch()); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Append on a full disk = %v, want ENOSPC", err)
	}
	imps := impressionsOnly()
	if err := l.Append(imps); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Append on a full disk = %v, want ENOSPC", err)
	}
	if !errors.Is(l.Err(), syscall.ENOSPC) {
		t.Fatalf("Err() = %v, want ENOSPC", l.Err())
	}
	mu.Lock()
	full = false
	mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for l.Err() != nil {
		if time.Now().After(deadline) {
			t.Fatal("log did not recover within 5s of the disk freeing up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, _, err := collect(t, d)
	if err != nil {
		t.Fatal(err)
	}
	sameRecords(t, got, append(wantSample(), wantSample()[1:]...))
}

// impressionsOnly is sampleBatch without its campaign record.
func impressionsOnly() *Batch {
	var b Batch
	for _, r := range wantSample()[1:] {
		b.AddImpression(r.Campaign, r.Arrival, r.Minute, r.KeyLo, r.KeyHi, r.User, nil)
	}
	return &b
}

func TestDirLock(t *testing.T) {
	dir := t.TempDir()
	d, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenDir(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second OpenDir = %v, want ErrLocked", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d2, err := OpenDir(dir)
	if err != nil {
		t.Fatalf("OpenDir after Close: %v", err)
	}
	if err := d2.Close(); err != nil {
		t.Fatal(err)
	}
}

// writeSnapshot writes a snapshot for seg with three sections.
func writeSnapshot(t *testing.T, d *Dir, seg uint64, payloads ...[]byte) {
	t.Helper()
	w, err := d.CreateSnapshot(seg)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range payloads {
		if err := w.Section(byte(i+1), func(w io.Writer) error { _, err := w.Write(p); return err }); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// readSnapshot reads every section back, each reader taking exactly want's
// length.
func readSnapshot(d *Dir, seg uint64, want ...[]byte) ([][]byte, error) {
	r, err := d.OpenSnapshot(seg)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var got [][]byte
	for i, w := range want {
		buf := make([]byte, len(w))
		err := r.Section(byte(i+1), func(r io.Reader) error { _, err := io.ReadFull(r, buf); return err })
		if err != nil {
			return nil, err
		}
		got = append(got, buf)
	}
	return got, r.End()
}

var snapPayloads = [][]byte{[]byte("meta"), bytes.Repeat([]byte("campaigns"), 100), {}, []byte("dedup bits")}

func TestSnapshotRoundTrip(t *testing.T) {
	d := openTestDir(t)
	writeSnapshot(t, d, 3, snapPayloads...)
	got, err := readSnapshot(d, 3, snapPayloads...)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, snapPayloads) {
		t.Fatalf("got %q, want %q", got, snapPayloads)
	}
	if n, ok, err := d.LatestSnapshot(); n != 3 || !ok || err != nil {
		t.Fatalf("LatestSnapshot = %d, %v, %v; want 3, true, nil", n, ok, err)
	}
}

// TestSnapshotCorruption flips every byte and cuts at every length: each
// is refused, naming the file.
func TestSnapshotCorruption(t *testing.T) {
	d := openTestDir(t)
	writeSnapshot(t, d, 1, snapPayloads...)
	path := d.snapshotPath(1)
	full := readFile(t, path)
	check := func(what string, bad []byte) {
		t.Helper()
		writeFile(t, path, bad, 0o644)
		_, err := readSnapshot(d, 1, snapPayloads...)
		if err == nil {
			t.Fatalf("%s: snapshot accepted", what)
		}
		if !bytes.Contains([]byte(err.Error()), []byte(path)) {
			t.Fatalf("%s: error %q does not name the file", what, err)
		}
	}
	for i := range full {
		bad := bytes.Clone(full)
		bad[i] ^= 1
		check(fmt.Sprintf("byte %d flipped", i), bad)
	}
	for n := range len(full) {
		check(fmt.Sprintf("cut at %d", n), full[:n])
	}
	check("trailing byte", append(bytes.Clone(full), 0))
}

func TestSnapshotVersionMismatch(t *testing.T) {
	d := openTestDir(t)
	writeSnapshot(t, d, 1, snapPayloads...)
	path := d.snapshotPath(1)
	b := readFile(t, path)
	b[len(snapMagic)] = 2
	writeFile(t, path, b, 0o644)
	_, err := d.OpenSnapshot(1)
	if !errors.Is(err, ErrVersion) {
		t.Fatalf("err = %v, want ErrVersion", err)
	}
}

// TestSnapshotAtomic: an abandoned snapshot leaves no file behind, nor does
// a temporary file left by a crash survive the next OpenDir.
func TestSnapshotAtomic(t *testing.T) {
	d := openTestDir(t)
	w, err := d.CreateSnapshot(5)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Section(1, func(w io.Writer) error { return errors.New("boom") }); err == nil {
		t.Fatal("Section succeeded although its writer failed")
	}
	if n, ok, _ := d.LatestSnapshot(); ok {
		t.Fatalf("snapshot %d exists after a failed write", n)
	}
	w2, err := d.CreateSnapshot(6)
	if err != nil {
		t.Fatal(err)
	}
	if err := w2.Section(1, func(w io.Writer) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := w2.bw.Flush(); err != nil { // the process dies here
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d2, err := OpenDir(d.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	left, _ := filepath.Glob(filepath.Join(d.Path(), "*"+tmpSuffix))
	if len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

func TestRemoveBefore(t *testing.T) {
	d := openTestDir(t)
	writeSegments(t, d) // segments 1, 2
	writeSnapshot(t, d, 1)
	writeSnapshot(t, d, 2)
	if err := d.RemoveBefore(2); err != nil {
		t.Fatal(err)
	}
	segs, _ := d.Segments()
	snaps, _ := d.Snapshots()
	if !reflect.DeepEqual(segs, []uint64{2}) || !reflect.DeepEqual(snaps, []uint64{2}) {
		t.Fatalf("left segments %v, snapshots %v; want [2], [2]", segs, snaps)
	}
}

// TestLogStartsOnFullDisk: a log whose first segment cannot be created
// starts anyway, failed, and refuses appends with ErrNoSpace, keeping
// nothing; once the disk has room it creates the segment and appends work.
func TestLogStartsOnFullDisk(t *testing.T) {
	d := openTestDir(t)
	var mu sync.Mutex
	full := true
	l, err := OpenLog(d, 1, Options{FsyncInterval: time.Hour, OpenFile: func(p string) (File, error) {
		mu.Lock()
		defer mu.Unlock()
		if full {
			return nil, syscall.ENOSPC
		}
		return os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	}})
	if err != nil {
		t.Fatalf("OpenLog on a full disk: %v, want a failed log, not an error", err)
	}
	if !errors.Is(l.Err(), syscall.ENOSPC) {
		t.Fatalf("Err() = %v, want ENOSPC", l.Err())
	}
	if err := l.Append(sampleBatch()); !errors.Is(err, ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Append on a full disk: %v, want ErrNoSpace for ENOSPC", err)
	}
	mu.Lock()
	full = false
	mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for l.Err() != nil {
		if time.Now().After(deadline) {
			t.Fatal("log did not recover within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := l.Append(sampleBatch()); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, _, err := collect(t, d)
	if err != nil {
		t.Fatal(err)
	}
	sameRecords(t, got, wantSample())
}

// TestLogWritesPromptly: with a long fsync interval nobody waits, but an
// appended record still reaches the file (the operating system, which
// survives the process being killed) long before the next fsync. The 10s
// bound only tells "soon" from "an hour"; how soon is for a benchmark.
func TestLogWritesPromptly(t *testing.T) {
	d := openTestDir(t)
	l, err := OpenLog(d, 1, Options{FsyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var b Batch
	b.AddImpression(1, t0, 0, 1, 2, nil, nil)
	start := time.Now()
	if err := l.Append(&b); err != nil {
		t.Fatal(err)
	}
	for {
		fi, err := os.Stat(d.segmentPath(1))
		if err == nil && fi.Size() > int64(walHeader) {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("an appended record was not in the file within 10s, with the next fsync an hour away")
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("record in the file %s after Append", time.Since(start))
}

// TestSecretFile: a directory has no secret until CreateSecret, which
// refuses to replace one; a damaged file is a CorruptError.
func TestSecretFile(t *testing.T) {
	d, err := OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, ok, err := d.Secret(); ok || err != nil {
		t.Fatalf("new directory: secret present %v, err %v", ok, err)
	}
	want := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	if err := d.CreateSecret(want); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := d.Secret(); got != want || !ok || err != nil {
		t.Fatalf("Secret = %x, %v, %v; want %x", got, ok, err, want)
	}
	if err := d.CreateSecret([16]byte{9}); err == nil {
		t.Fatal("CreateSecret replaced an existing secret")
	}
	b := readFile(t, d.SecretPath())
	b[10] ^= 1
	writeFile(t, d.SecretPath(), b, 0o600)
	var ce *CorruptError
	if _, _, err := d.Secret(); !errors.As(err, &ce) || ce.File != d.SecretPath() {
		t.Fatalf("damaged secret file: %v, want a CorruptError naming it", err)
	}
}
