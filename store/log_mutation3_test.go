package store

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// TestDrainStopsAtOneMiB: drain stops taking requests as soon as 1 MiB of
// records is waiting, not one batch later. With batches that divide 1 MiB
// exactly, no write of queued records is larger than 1 MiB.
func TestDrainStopsAtOneMiB(t *testing.T) {
	// A batch of exactly 8 KiB: 128 of them are 1 MiB.
	const size = 8 << 10
	var b Batch
	for n := size; n > 0 && len(b.buf) != size; n-- {
		b.Reset()
		b.AddImpression(3, t0, unixMinute(t0.UnixNano()), 0, 0, bytes.Repeat([]byte("u"), n), nil)
		if len(b.buf) < size {
			break
		}
	}
	if len(b.buf) != size {
		t.Fatalf("no user id gives a batch of %d bytes (last %d)", size, len(b.buf))
	}

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
	first := impression("first")
	if err := l.Append(first); err != nil {
		t.Fatal(err)
	}
	within(t, g.entered, "the writer's first write")
	// 4 MiB queue behind the held write.
	const queued = 4 * 128
	for i := 0; i < queued; i++ {
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
	// writes[0] is the segment header, writes[1] the first record.
	if len(writes) < 2 || writes[1] != len(first.buf) {
		t.Fatalf("writes %v: want the header, then the first record alone (%d bytes)", writes, len(first.buf))
	}
	total, most := 0, 0
	for _, n := range writes[2:] {
		total += n
		most = max(most, n)
	}
	if total != queued*size {
		t.Fatalf("%d bytes of queued records written, want %d", total, queued*size)
	}
	if most != 1<<20 {
		t.Fatalf("largest write of queued records %d bytes, want exactly 1 MiB (writes %v)", most, writes[2:])
	}
}
