package store

import (
	"os"
	"sync"
	"testing"
	"time"
)

// syncCounter records, for the file the log writes, how many bytes were
// written since the last fsync and how many fsyncs succeeded.
type syncCounter struct {
	mu       sync.Mutex
	unsynced int // bytes written since the last Sync
	syncs    int
}

func (c *syncCounter) state() (unsynced, syncs int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.unsynced, c.syncs
}

// countedFile is an *os.File whose writes and fsyncs are recorded in c.
type countedFile struct {
	*os.File
	c *syncCounter
}

func (f countedFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	f.c.mu.Lock()
	f.c.unsynced += n
	f.c.mu.Unlock()
	return n, err
}

func (f countedFile) Sync() error {
	err := f.File.Sync()
	if err == nil {
		f.c.mu.Lock()
		f.c.unsynced = 0
		f.c.syncs++
		f.c.mu.Unlock()
	}
	return err
}

func openCountedLog(t *testing.T, interval time.Duration) (*Log, *syncCounter) {
	t.Helper()
	c := &syncCounter{}
	l, err := OpenLog(openTestDir(t), 1, Options{FsyncInterval: interval, OpenFile: func(p string) (File, error) {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, err
		}
		return countedFile{f, c}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, c
}

func impressionBatch(i int) *Batch {
	var b Batch
	b.AddImpression(1, t0.Add(time.Duration(i)*time.Second), 0, uint64(i), 2, nil, nil)
	return &b
}

// TestLogFsyncsEachGroupCommit: with FsyncInterval 0, every Append returns
// only once its records have been written and fsync'd.
func TestLogFsyncsEachGroupCommit(t *testing.T) {
	l, c := openCountedLog(t, 0)
	_, before := c.state()
	for i := 0; i < 3; i++ {
		if err := l.Append(impressionBatch(i)); err != nil {
			t.Fatal(err)
		}
		unsynced, syncs := c.state()
		if unsynced != 0 {
			t.Fatalf("after Append %d: %d bytes written but not fsync'd, want 0", i, unsynced)
		}
		if got, want := syncs-before, i+1; got < want {
			t.Fatalf("after Append %d: %d fsyncs since open, want at least %d", i, got, want)
		}
	}
}

// TestLogFsyncsWithinInterval: with FsyncInterval > 0, Append does not wait,
// but the records are fsync'd without further traffic once the interval is
// over. The bound is generous; the interval is what the log promises.
func TestLogFsyncsWithinInterval(t *testing.T) {
	const interval = 20 * time.Millisecond
	l, c := openCountedLog(t, interval)
	_, before := c.state()
	if err := l.Append(impressionBatch(0)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		unsynced, syncs := c.state()
		if unsynced == 0 && syncs > before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5s after Append: %d bytes not fsync'd, %d fsyncs since open; want 0 bytes and at least 1 fsync (interval %s)",
				unsynced, syncs-before, interval)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
