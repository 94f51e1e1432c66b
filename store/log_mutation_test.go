package store

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/impressiond/impressiond/internal/faultfs"
)

// gate holds the log writer inside its next write of records until the
// test releases it, and counts the writes of records.
type gate struct {
	mu      sync.Mutex
	hold    chan struct{} // the next write waits for it to close; nil: no wait
	entered chan struct{} // receives when a write starts waiting
	writes  int
}

func newGate() *gate { return &gate{entered: make(chan struct{}, 1)} }

// arm makes the next write wait until the returned func is called.
func (g *gate) arm() (release func()) {
	h := make(chan struct{})
	g.mu.Lock()
	g.hold = h
	g.mu.Unlock()
	return func() { close(h) }
}

func (g *gate) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.writes
}

// gatedFile is a file of a faultfs disk whose writes pass through a gate.
type gatedFile struct {
	*faultfs.File
	g *gate
}

func (f gatedFile) Write(p []byte) (int, error) {
	f.g.mu.Lock()
	f.g.writes++
	h := f.g.hold
	f.g.hold = nil
	f.g.mu.Unlock()
	if h != nil {
		f.g.entered <- struct{}{}
		<-h
	}
	return f.File.Write(p)
}

// openGated opens a log on a faultfs disk of capacity bytes whose writes
// pass through the returned gate. The header write of OpenLog is counted
// as well.
func openGated(t *testing.T, d *Dir, capacity int64, o Options) (*Log, *testDisk, *gate) {
	t.Helper()
	fs := newDisk(capacity)
	g := newGate()
	o.OpenFile = func(path string) (File, error) {
		f, err := fs.Open(path)
		if err != nil {
			return nil, err
		}
		return gatedFile{f, g}, nil
	}
	l, err := OpenLog(d, 1, o)
	if err != nil {
		t.Fatal(err)
	}
	return l, fs, g
}

// within fails the test unless ch receives within 10s, a bound that only
// tells "returns" from "never returns".
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not return within 10s", what)
		panic("unreachable")
	}
}

// TestLogOptionDefaults: Reserve and QueueLen take their documented
// defaults when zero, and a Reserve that is set is kept.
func TestLogOptionDefaults(t *testing.T) {
	for _, c := range []struct {
		reserve, want int64
	}{
		{0, 16 << 20},            // by default 16 MiB
		{-1, 16 << 20},           // a negative reserve too
		{minReserve, minReserve}, // kept as set
		{1, minReserve},          // never below minReserve
	} {
		d := openTestDir(t)
		fs := newDisk(1 << 30)
		l, err := OpenLog(d, 1, Options{FsyncInterval: time.Hour, Reserve: c.reserve, OpenFile: fs.open})
		if err != nil {
			t.Fatal(err)
		}
		if got := l.Stats().Reserved; got != c.want {
			t.Errorf("Reserve %d: %d bytes reserved at open, want %d", c.reserve, got, c.want)
		}
		if got := fs.Files[0].Blocks(); got != int64(walHeader)+c.want {
			t.Errorf("Reserve %d: segment holds %d bytes of blocks, want %d", c.reserve, got, int64(walHeader)+c.want)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}

	// QueueLen 0 queues 4096 batches: while the writer is held in a write,
	// a hundred appends that nobody waits for still return.
	d := openTestDir(t)
	l, _, g := openGated(t, d, 1<<30, Options{FsyncInterval: time.Hour})
	release := g.arm()
	if err := l.Append(impression("first")); err != nil {
		t.Fatal(err)
	}
	within(t, g.entered, "the writer's first write")
	queued := make(chan error, 1)
	go func() {
		for i := 0; i < 100; i++ {
			if err := l.Append(impression("queued")); err != nil {
				queued <- err
				return
			}
		}
		queued <- nil
	}()
	err := within(t, queued, "100 appends while the writer is held (QueueLen 0 means 4096)")
	release()
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, _, err := collect(t, d)
	if err != nil || len(got) != 101 {
		t.Fatalf("replayed %d records (%v), want 101", len(got), err)
	}
}

// TestReserveAccounting: Reserve takes exactly n bytes of credit, Release
// and AppendReserved give back exactly what is not used.
func TestReserveAccounting(t *testing.T) {
	d := openTestDir(t)
	fs := newDisk(1 << 30)
	l, err := OpenLog(d, 1, Options{FsyncInterval: 0, Reserve: minReserve, OpenFile: fs.open})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := l.Stats().Reserved; got != minReserve {
		t.Fatalf("%d bytes reserved at open, want %d", got, minReserve)
	}
	if err := l.Reserve(100); err != nil {
		t.Fatal(err)
	}
	if got := l.Stats().Reserved; got != minReserve-100 {
		t.Fatalf("after Reserve(100): %d bytes of credit, want %d", got, minReserve-100)
	}
	l.Release(100)
	if got := l.Stats().Reserved; got != minReserve {
		t.Fatalf("after Release(100): %d bytes of credit, want %d", got, minReserve)
	}
	b := impression("u")
	if err := l.Reserve(len(b.buf) + 1000); err != nil {
		t.Fatal(err)
	}
	if err := l.AppendReserved(b, len(b.buf)+1000); err != nil {
		t.Fatal(err)
	}
	// The writer tops the credit up only below half of Reserve, so the
	// credit is exactly what the record did not take.
	if got, want := l.Stats().Reserved, minReserve-int64(len(b.buf)); got != want {
		t.Fatalf("after AppendReserved: %d bytes of credit, want %d", got, want)
	}
	if st := l.Stats(); st.Records != 1 || st.Bytes != uint64(len(b.buf)) || st.Fsyncs != 1 {
		t.Fatalf("Stats = %+v, want 1 record of %d bytes, 1 fsync", st, len(b.buf))
	}
}

// TestReserveTakesWhatTheDiskHas: Reserve may take the credit to exactly
// zero; a Reserve beyond the credit waits for the writer to reserve more,
// which halves its request down to minReserve on a disk with less room,
// and below minReserve gives up: Reserve then fails with ErrNoSpace.
func TestReserveTakesWhatTheDiskHas(t *testing.T) {
	const chunk = 4 * minReserve
	d := openTestDir(t)
	// Room for the header, the first chunk, one minReserve and less than
	// another minReserve.
	fs := newDisk(int64(walHeader) + chunk + minReserve + minReserve/2 + minReserve/4)
	l, err := OpenLog(d, 1, Options{FsyncInterval: time.Hour, Reserve: chunk, OpenFile: fs.open})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Reserve(chunk); err != nil {
		t.Fatalf("Reserve of exactly the credit: %v", err)
	}
	if got := l.Stats().Reserved; got != 0 {
		t.Fatalf("%d bytes of credit after taking all of it", got)
	}
	// The writer cannot reserve chunk or chunk/2, but can minReserve.
	if err := l.Reserve(1); err != nil {
		t.Fatalf("Reserve beyond the credit with minReserve free: %v", err)
	}
	if got := l.Stats().Reserved; got != minReserve-1 {
		t.Fatalf("%d bytes of credit, want %d", got, minReserve-1)
	}
	if err := l.Reserve(minReserve - 1); err != nil {
		t.Fatal(err)
	}
	// Less than minReserve is left: the writer gives up.
	if err := l.Reserve(1); !errors.Is(err, ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Reserve with less than minReserve free = %v, want ErrNoSpace for ENOSPC", err)
	}
	if l.SpaceErr() == nil {
		t.Fatal("SpaceErr() = nil after a failed reservation")
	}
	if got, want := fs.Files[0].Blocks(), int64(walHeader)+chunk+minReserve; got != want {
		t.Fatalf("segment holds %d bytes of blocks, want %d", got, want)
	}
	l.Release(chunk + minReserve)
}

// TestReserveWaitsForTheWriter: a Reserve larger than the whole credit,
// while the credit is above the writer's refill mark, still makes the
// writer reserve more, and returns.
func TestReserveWaitsForTheWriter(t *testing.T) {
	d := openTestDir(t)
	fs := newDisk(1 << 30)
	l, err := OpenLog(d, 1, Options{FsyncInterval: time.Hour, Reserve: minReserve, OpenFile: fs.open})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan error, 1)
	go func() { done <- l.Reserve(minReserve + 1) }()
	if err := within(t, done, "Reserve(minReserve+1)"); err != nil {
		t.Fatal(err)
	}
	if got := l.Stats().Reserved; got != minReserve-1 {
		t.Fatalf("%d bytes of credit, want %d", got, minReserve-1)
	}
}

// TestWriterRefillsAtHalf: the writer reserves more only once the credit
// is below half of Reserve.
func TestWriterRefillsAtHalf(t *testing.T) {
	d := openTestDir(t)
	l, fs, g := openGated(t, d, 1<<30, Options{FsyncInterval: 0, Reserve: minReserve})
	defer l.Close()
	// Both records come out of one reservation taken up front, so the
	// credit is exactly half of Reserve whenever the writer looks.
	if err := l.Reserve(minReserve / 2); err != nil {
		t.Fatal(err)
	}
	b, v := impression("u"), impression("v")
	if err := l.AppendReserved(b, len(b.buf)); err != nil {
		t.Fatal(err)
	}
	// The next request's write comes after the writer's refill check of
	// the first one.
	release := g.arm()
	done := make(chan error, 1)
	go func() { done <- l.AppendReserved(v, len(v.buf)) }()
	within(t, g.entered, "the second write")
	blocks := fs.Files[0].Blocks()
	release()
	if err := within(t, done, "AppendReserved"); err != nil {
		t.Fatal(err)
	}
	if want := int64(walHeader) + minReserve; blocks != want {
		t.Fatalf("with the credit at half of Reserve the segment holds %d bytes of blocks, want %d (no refill)", blocks, want)
	}
	l.Release(minReserve/2 - len(b.buf) - len(v.buf))
}

// TestCloseGivesBackReservation: Close cuts the segment's reserved blocks
// back to its records.
func TestCloseGivesBackReservation(t *testing.T) {
	d := openTestDir(t)
	fs := newDisk(1 << 30)
	l, err := OpenLog(d, 1, Options{FsyncInterval: time.Hour, Reserve: minReserve, OpenFile: fs.open})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(impression("u")); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	want := int64(walHeader + len(impression("u").buf))
	if b, size := fs.Files[0].Blocks(), fs.Files[0].Size(); b != want || size != want {
		t.Fatalf("closed segment holds %d bytes of blocks for %d bytes, want %d for %d", b, size, want, want)
	}
	if fs.Durable() != want {
		t.Fatalf("%d bytes fsync'd at Close, want %d", fs.Durable(), want)
	}
}

// TestCloseWithoutSegment: a log that never could create its segment
// closes, reporting why.
func TestCloseWithoutSegment(t *testing.T) {
	d := openTestDir(t)
	l, err := OpenLog(d, 1, Options{FsyncInterval: time.Hour, OpenFile: func(string) (File, error) {
		return nil, syscall.ENOSPC
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Close = %v, want ENOSPC", err)
	}
}

// TestIdleLogDoesNotFsync: a log that received nothing writes and fsyncs
// nothing but its header, not even at Rotate or Close.
func TestIdleLogDoesNotFsync(t *testing.T) {
	d := openTestDir(t)
	l, _, g := openGated(t, d, 1<<30, Options{FsyncInterval: time.Hour})
	if _, err := l.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.Fsyncs != 0 || st.Records != 0 || st.Bytes != 0 {
		t.Fatalf("Stats of an idle log = %+v, want zeros", st)
	}
	if n := g.count(); n != 2 {
		t.Fatalf("%d writes, want the 2 segment headers", n)
	}
}

// TestCloseWritesQueuedRecords: records queued behind a slow write when
// Close is called are all written before it returns.
func TestCloseWritesQueuedRecords(t *testing.T) {
	d := openTestDir(t)
	l, _, g := openGated(t, d, 1<<30, Options{FsyncInterval: time.Hour})
	release := g.arm()
	if err := l.Append(impression("first")); err != nil {
		t.Fatal(err)
	}
	within(t, g.entered, "the writer's first write")
	const queued = 20
	for i := 0; i < queued; i++ {
		if err := l.Append(impression("queued")); err != nil {
			t.Fatal(err)
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	deadline := time.Now().Add(10 * time.Second)
	for !l.closed.Load() {
		if time.Now().After(deadline) {
			t.Fatal("Close did not start within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	release()
	if err := within(t, closed, "Close"); err != nil {
		t.Fatal(err)
	}
	got, _, err := collect(t, d)
	if err != nil || len(got) != queued+1 {
		t.Fatalf("replayed %d records (%v) after Close, want %d", len(got), err, queued+1)
	}
}

// TestRetractionGivesBackItsRecords: a retracted campaign that followed
// records not yet fsync'd leaves them alone and gives back exactly its
// own count and reserved bytes.
func TestRetractionGivesBackItsRecords(t *testing.T) {
	d := openTestDir(t)
	l, fs, g := openGated(t, d, 1<<30, Options{FsyncInterval: time.Hour, Reserve: minReserve})
	imp := impression("kept")
	release := g.arm()
	if err := l.Append(imp); err != nil {
		t.Fatal(err)
	}
	within(t, g.entered, "the impression's write")
	release()
	// The impression is written, not fsync'd: wait for the write to end.
	deadline := time.Now().Add(10 * time.Second)
	for l.Stats().Bytes == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the impression was not written within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	before := l.Stats()
	fs.Set(func(d *faultfs.Disk) { d.WriteErr = 1 })
	var c Batch
	c.AddCampaign(9, "ghost", "Ghost", t0)
	if err := l.Append(&c); !errors.Is(err, syscall.EIO) {
		t.Fatalf("campaign Append on a failing disk = %v, want EIO", err)
	}
	after := l.Stats()
	if after.Records != 1 {
		t.Fatalf("%d records after the retraction, want 1", after.Records)
	}
	if after.Reserved != before.Reserved {
		t.Fatalf("%d bytes of credit after the retraction, want %d as before it", after.Reserved, before.Reserved)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, st, err := collect(t, d)
	if err != nil || st.Torn != nil || len(got) != 1 || string(got[0].User) != "kept" {
		t.Fatalf("replayed %+v (%v, torn %v), want only the impression", got, err, st.Torn)
	}
}

// TestFailedWriteOfNothingAnswersAtOnce: when a write fails before any
// byte of it reached the file, there is nothing to cut back: a campaign is
// answered with the error though truncation fails too.
func TestFailedWriteOfNothingAnswersAtOnce(t *testing.T) {
	d := openTestDir(t)
	fs := newDisk(1 << 30)
	l, err := OpenLog(d, 1, Options{FsyncInterval: 0, Reserve: minReserve, OpenFile: fs.open})
	if err != nil {
		t.Fatal(err)
	}
	fs.Set(func(d *faultfs.Disk) { d.WriteErr, d.FailCut = 1, true })
	var c Batch
	c.AddCampaign(9, "ghost", "Ghost", t0)
	done := make(chan error, 1)
	go func() { done <- l.Append(&c) }()
	if err := within(t, done, "campaign Append after a write of nothing failed"); !errors.Is(err, syscall.EIO) {
		t.Fatalf("campaign Append = %v, want EIO", err)
	}
	fs.Set(func(d *faultfs.Disk) { d.FailCut = false })
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, _, err := collect(t, d)
	if err != nil || len(got) != 0 {
		t.Fatalf("replayed %d records (%v), want none", len(got), err)
	}
}

// TestRotateReservesPromised: space promised by Reserve and not yet
// appended is reserved again in the new segment, with half of Reserve
// ahead of it; the records then fit.
func TestRotateReservesPromised(t *testing.T) {
	const promised = 60 << 10
	d := openTestDir(t)
	fs := newDisk(1 << 30)
	l, err := OpenLog(d, 1, Options{FsyncInterval: time.Hour, Reserve: minReserve, OpenFile: fs.open})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Reserve(promised); err != nil {
		t.Fatal(err)
	}
	seg, err := l.Rotate()
	if err != nil || seg != 2 {
		t.Fatalf("Rotate = %d, %v; want segment 2", seg, err)
	}
	if got, want := fs.Files[1].Blocks(), int64(walHeader)+promised+minReserve/2; got != want {
		t.Fatalf("new segment holds %d bytes of blocks, want %d (promised + Reserve/2)", got, want)
	}
	if got := l.Stats().Reserved; got != minReserve/2 {
		t.Fatalf("%d bytes of credit after Rotate, want %d", got, minReserve/2)
	}
	if b, size := fs.Files[0].Blocks(), fs.Files[0].Size(); b != size || size != int64(walHeader) {
		t.Fatalf("old segment holds %d bytes of blocks for %d bytes, want %d for %d", b, size, walHeader, walHeader)
	}
	var b Batch
	for len(b.buf) < promised-100 {
		b.AddImpression(3, t0, unixMinute(t0.UnixNano()), 0, 0, []byte("u"), nil)
	}
	if err := l.AppendReserved(&b, promised); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, _, err := collect(t, d)
	if err != nil || len(got) != b.Len() {
		t.Fatalf("replayed %d records (%v), want %d", len(got), err, b.Len())
	}
}

// TestRotateSmallPromise: with less than half of Reserve promised, the
// new segment reserves Reserve, and the credit is Reserve less the promise.
func TestRotateSmallPromise(t *testing.T) {
	d := openTestDir(t)
	fs := newDisk(1 << 30)
	l, err := OpenLog(d, 1, Options{FsyncInterval: time.Hour, Reserve: minReserve, OpenFile: fs.open})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Reserve(1000); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Rotate(); err != nil {
		t.Fatal(err)
	}
	if got, want := fs.Files[1].Blocks(), int64(walHeader)+minReserve; got != want {
		t.Fatalf("new segment holds %d bytes of blocks, want %d", got, want)
	}
	if got := l.Stats().Reserved; got != minReserve-1000 {
		t.Fatalf("%d bytes of credit after Rotate, want %d", got, minReserve-1000)
	}
	l.Release(1000)
}

// TestRotateNoSpaceNamesSegment: a rotation that cannot reserve names the
// segment it could not reserve, and removes it.
func TestRotateNoSpaceNamesSegment(t *testing.T) {
	d := openTestDir(t)
	fs := newDisk(int64(walHeader) + minReserve + 8<<10)
	l, err := OpenLog(d, 1, Options{FsyncInterval: time.Hour, Reserve: minReserve, OpenFile: fs.open})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = l.Rotate()
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "log segment 2:") {
		t.Fatalf("Rotate = %v, want ENOSPC naming log segment 2", err)
	}
	if segs, err := d.Segments(); err != nil || len(segs) != 1 || segs[0] != 1 {
		t.Fatalf("segments %v (%v), want [1]", segs, err)
	}
}

// TestSegmentHeaderWriteFails: a segment whose header cannot be written is
// not used: the log starts failed, and once the disk works it starts the
// segment again with its header, so that replay reads it.
func TestSegmentHeaderWriteFails(t *testing.T) {
	d := openTestDir(t)
	fs := newDisk(1 << 30)
	fs.Set(func(d *faultfs.Disk) { d.WriteErr = 1 })
	l, err := OpenLog(d, 1, Options{FsyncInterval: time.Hour, OpenFile: fs.open})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(l.Err(), syscall.EIO) {
		t.Fatalf("Err() = %v, want EIO", l.Err())
	}
	deadline := time.Now().Add(10 * time.Second)
	for l.Err() != nil {
		if time.Now().After(deadline) {
			t.Fatal("the log did not start its segment within 10s of the disk working")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := l.Append(impression("u")); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, _, err := collect(t, d)
	if err != nil || len(got) != 1 {
		t.Fatalf("replayed %d records (%v), want 1", len(got), err)
	}
}

// TestSegmentHeaderIsFsynced: the header of a new segment is durable
// before OpenLog returns.
func TestSegmentHeaderIsFsynced(t *testing.T) {
	d := openTestDir(t)
	fs := newDisk(1 << 30)
	l, err := OpenLog(d, 1, Options{FsyncInterval: time.Hour, OpenFile: fs.open})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := fs.Durable(); got != int64(walHeader) {
		t.Fatalf("%d bytes fsync'd after OpenLog, want the %d of the header", got, walHeader)
	}
}

// TestCloseDrainsBehindWrittenRecords: the records Close drains are
// bounded by what is not yet written, not by what is written and waits
// for its fsync: with most of 1 MiB written since the last fsync, the
// records queued behind it are still written at Close.
func TestCloseDrainsBehindWrittenRecords(t *testing.T) {
	d := openTestDir(t)
	l, _, g := openGated(t, d, 1<<30, Options{FsyncInterval: time.Hour, Reserve: 4 << 20})
	big := bytes.Repeat([]byte("b"), 60<<10)
	const bigs = 15 // 900 KiB written, not fsync'd
	var want uint64
	for i := 0; i < bigs; i++ {
		var b Batch
		b.AddImpression(3, t0, unixMinute(t0.UnixNano()), 0, 0, big, nil)
		want += uint64(len(b.buf))
		if err := l.Append(&b); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for l.Stats().Bytes < want {
		if time.Now().After(deadline) {
			t.Fatal("the records were not written within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	release := g.arm()
	if err := l.Append(impression("held")); err != nil {
		t.Fatal(err)
	}
	within(t, g.entered, "the held write")
	const queued = 20
	for i := 0; i < queued; i++ {
		if err := l.Append(impression("queued")); err != nil {
			t.Fatal(err)
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	for !l.closed.Load() {
		if time.Now().After(deadline) {
			t.Fatal("Close did not start within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	release()
	if err := within(t, closed, "Close"); err != nil {
		t.Fatal(err)
	}
	got, _, err := collect(t, d)
	if err != nil || len(got) != bigs+1+queued {
		t.Fatalf("replayed %d records (%v) after Close, want %d", len(got), err, bigs+1+queued)
	}
}
