package store

import (
	"bytes"
	"testing"
	"time"
)

// TestCloseWritesEveryQueuedRecord: Close promises to write and fsync
// every queued record. With FsyncInterval > 0 Append returns once its
// records are queued, so the queue can hold more than the 1 MiB that one
// drain takes: Close must go on until the queue is empty.
func TestCloseWritesEveryQueuedRecord(t *testing.T) {
	d := openTestDir(t)
	l, _, g := openGated(t, d, 1<<30, Options{FsyncInterval: time.Hour, Reserve: 64 << 20})
	release := g.arm()
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
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != queued+1 {
		t.Fatalf("replayed %d records after Close, want every one of the %d appended", len(got), queued+1)
	}
}
