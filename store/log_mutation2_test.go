package store

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// TestReserveKicksTheWriter: a Reserve beyond the credit, while the credit
// is above the writer's refill mark, wakes the writer at once (it does not
// wait for the writer's tick) and waits until the credit covers it. A
// credit that then covers it exactly is enough: Reserve takes it to zero,
// without making the writer reserve again.
func TestReserveKicksTheWriter(t *testing.T) {
	d := openTestDir(t)
	l, fs, g := openGated(t, d, 1<<30, Options{FsyncInterval: time.Hour, Reserve: minReserve})
	defer l.Close()
	// Hold the writer inside the write of one record, so that only this
	// test can take the kick Reserve sends it.
	b := impression("u")
	release := sync.OnceFunc(g.arm())
	defer release() // before Close, which waits for the writer
	if err := l.Append(b); err != nil {
		t.Fatal(err)
	}
	within(t, g.entered, "the writer's write")
	credit := int64(minReserve - len(b.buf))
	if got := l.Stats().Reserved; got != credit {
		t.Fatalf("%d bytes of credit after one record, want %d", got, credit)
	}
	// Exactly what the credit is once the writer has reserved one more
	// minReserve: above the refill mark, so only the kick makes the
	// writer reserve.
	n := int(credit + minReserve)
	done := make(chan error, 1)
	go func() { done <- l.Reserve(n) }()
	within(t, l.kick, "the kick of a Reserve beyond the credit")
	release()
	if err := within(t, done, "Reserve"); err != nil {
		t.Fatal(err)
	}
	if got := l.Stats().Reserved; got != 0 {
		t.Fatalf("%d bytes of credit after a Reserve of exactly the credit, want 0", got)
	}
	if got, want := fs.Files[0].Blocks(), int64(walHeader)+2*minReserve; got != want {
		t.Fatalf("segment holds %d bytes of blocks, want %d (two reservations of minReserve)", got, want)
	}
	l.Release(n)
}

// TestQueuedRecordsAreNotFsyncedEachWrite: with FsyncInterval > 0 and
// nobody waiting, the writer writes what is queued, about 1 MiB at a time,
// and leaves the fsync to its tick and to Close: 8 MiB of queued records
// take at least 8 writes but only Close's fsync and those of the ticks
// that fall within the test (the writer ticks once a second).
func TestQueuedRecordsAreNotFsyncedEachWrite(t *testing.T) {
	d := openTestDir(t)
	l, _, g := openGated(t, d, 1<<30, Options{FsyncInterval: time.Hour, Reserve: 64 << 20})
	release := sync.OnceFunc(g.arm())
	defer release()
	if err := l.Append(impression("first")); err != nil {
		t.Fatal(err)
	}
	within(t, g.entered, "the writer's first write")
	// 8 MiB of records queue behind the held write.
	user := bytes.Repeat([]byte("u"), 4<<10)
	const queued = 2048
	for i := 0; i < queued; i++ {
		var b Batch
		b.AddImpression(3, t0, unixMinute(t0.UnixNano()), 0, 0, user, nil)
		if err := l.Append(&b); err != nil {
			t.Fatal(err)
		}
	}
	release()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	if st.Records != queued+1 {
		t.Fatalf("%d records written, want %d", st.Records, queued+1)
	}
	// The header's write, the first record's, and one for each MiB.
	if w := g.count(); w < 2+8 {
		t.Fatalf("%d writes, want at least 10", w)
	}
	// Close's fsync, and at most a few ticks'; not one per write.
	if st.Fsyncs < 1 || st.Fsyncs > 4 {
		t.Fatalf("%d fsyncs for %d writes of records nobody waited for, want Close's and the ticks' (1 to 4)", st.Fsyncs, g.count()-1)
	}
}

// sizedFile records the size of every write of records.
type sizedFile struct {
	gatedFile
	mu     *sync.Mutex
	writes *[]int
}

func (f sizedFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	*f.writes = append(*f.writes, len(p))
	f.mu.Unlock()
	return f.gatedFile.Write(p)
}

// TestCloseWritesQueueInMiBs: however much is queued when Close is called,
// the writer takes it about 1 MiB at a time (drain), writing as it goes,
// rather than gathering the whole queue in memory for one write.
func TestCloseWritesQueueInMiBs(t *testing.T) {
	d := openTestDir(t)
	fs := newDisk(1 << 30)
	g := newGate()
	var mu sync.Mutex
	var writes []int
	l, err := OpenLog(d, 1, Options{FsyncInterval: time.Hour, Reserve: 64 << 20, OpenFile: func(path string) (File, error) {
		f, err := fs.Open(path)
		if err != nil {
			return nil, err
		}
		return sizedFile{gatedFile{f, g}, &mu, &writes}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	release := sync.OnceFunc(g.arm())
	defer release()
	if err := l.Append(impression("first")); err != nil {
		t.Fatal(err)
	}
	within(t, g.entered, "the writer's first write")
	// 2048 batches of 8 KiB: 16 MiB queue behind the held write. Close
	// follows at once; the writer needs at least 16 writes, each followed
	// by its coalesce pause, to empty the queue, so most of it is still
	// queued when Close is called.
	user := bytes.Repeat([]byte("u"), 8<<10)
	const queued = 2048
	var b Batch
	for i := 0; i < queued; i++ {
		b.Reset()
		b.AddImpression(3, t0, unixMinute(t0.UnixNano()), 0, 0, user, nil)
		if err := l.Append(&b); err != nil {
			t.Fatal(err)
		}
	}
	release()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.Records != queued+1 {
		t.Fatalf("%d records written, want %d", st.Records, queued+1)
	}
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for i, n := range writes {
		total += n
		// drain stops once 1 MiB is waiting, so a write holds at most
		// 1 MiB and one more batch.
		if n > 1<<20+len(b.buf) {
			t.Fatalf("write %d of %d holds %d bytes, more than 1 MiB and one batch (%d)", i, len(writes), n, 1<<20+len(b.buf))
		}
	}
	if total < queued*len(b.buf) {
		t.Fatalf("%d bytes written, want at least %d", total, queued*len(b.buf))
	}
}
