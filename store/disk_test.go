package store

import (
	"errors"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// disk is a small file system for the log's segments: it has capacity
// bytes, which reserved blocks and written bytes past them take, and can
// be told to fail writes, fsyncs or truncations with an I/O error. It
// tracks, per file, how far the content is fsync'd.
type disk struct {
	mu       sync.Mutex
	capacity int64
	used     int64
	writeErr int  // this many next writes fail with EIO
	syncErr  int  // this many next fsyncs fail with EIO
	failCut  bool // truncations fail with EIO
	partial  int  // the next failing write still writes this many bytes
	files    []*diskFile
	synced   chan struct{} // receives after every successful fsync
	ioErrs   chan struct{} // receives after every write failed with EIO
}

func newDisk(capacity int64) *disk {
	return &disk{capacity: capacity, synced: make(chan struct{}, 1<<10), ioErrs: make(chan struct{}, 1<<10)}
}

func (d *disk) set(f func(d *disk)) {
	d.mu.Lock()
	f(d)
	d.mu.Unlock()
}

// open is an Options.OpenFile.
func (d *disk) open(path string) (File, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.used >= d.capacity {
		return nil, syscall.ENOSPC
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	df := &diskFile{f: f, d: d}
	d.files = append(d.files, df)
	return df, nil
}

// durable returns the bytes of every file's content that are fsync'd.
func (d *disk) durable() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var n int64
	for _, f := range d.files {
		n += f.synced
	}
	return n
}

type diskFile struct {
	f      *os.File
	d      *disk
	size   int64 // bytes written
	blocks int64 // bytes of blocks taken: max(size, reserved end)
	synced int64
}

// take gives the file blocks up to end, from the disk's capacity.
func (f *diskFile) take(end int64) error {
	if end <= f.blocks {
		return nil
	}
	if f.d.used+end-f.blocks > f.d.capacity {
		return syscall.ENOSPC
	}
	f.d.used += end - f.blocks
	f.blocks = end
	return nil
}

func (f *diskFile) Write(p []byte) (int, error) {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	if f.d.writeErr > 0 {
		f.d.writeErr--
		select {
		case f.d.ioErrs <- struct{}{}:
		default:
		}
		n := min(f.d.partial, len(p))
		f.d.partial = 0
		if n > 0 {
			m, _ := f.f.Write(p[:n])
			f.size += int64(m)
			f.take(f.size)
			return m, syscall.EIO
		}
		return 0, syscall.EIO
	}
	// Like a real file system, write what fits, then fail.
	n := len(p)
	if f.take(f.size+int64(n)) != nil {
		n = int(max(0, min(int64(n), f.blocks-f.size+f.d.capacity-f.d.used)))
		f.take(f.size + int64(n))
	}
	m, err := f.f.Write(p[:n])
	f.size += int64(m)
	if err == nil && m < len(p) {
		err = syscall.ENOSPC
	}
	return m, err
}

func (f *diskFile) Sync() error {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	if f.d.syncErr > 0 {
		f.d.syncErr--
		return syscall.EIO
	}
	if err := f.f.Sync(); err != nil {
		return err
	}
	f.synced = f.size
	select {
	case f.d.synced <- struct{}{}:
	default:
	}
	return nil
}

func (f *diskFile) Allocate(off, n int64) error {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	return f.take(off + n)
}

func (f *diskFile) Truncate(size int64) error {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	if f.d.failCut {
		return syscall.EIO
	}
	if err := f.f.Truncate(size); err != nil {
		return err
	}
	f.size = min(f.size, size)
	f.synced = min(f.synced, size)
	if size < f.blocks {
		f.d.used -= f.blocks - size
		f.blocks = size
	}
	return nil
}

func (f *diskFile) Seek(off int64, whence int) (int64, error) { return f.f.Seek(off, whence) }

func (f *diskFile) Close() error { return f.f.Close() }

// impression returns a batch of one impression record of user u.
func impression(u string) *Batch {
	var b Batch
	b.AddImpression(3, t0, unixMinute(t0.UnixNano()), 0, 0, []byte(u))
	return &b
}

// TestFullDiskRefusesBeforeAccepting: on a file system that reserves,
// appends are refused with ErrNoSpace once the reserved space runs out;
// every record accepted before is written and fsync'd, within the fsync
// interval, though the disk is full; nothing refused is ever written.
func TestFullDiskRefusesBeforeAccepting(t *testing.T) {
	d := openTestDir(t)
	fs := newDisk(minReserve + 20<<10)
	l, err := OpenLog(d, 1, Options{FsyncInterval: 20 * time.Millisecond, Reserve: minReserve, OpenFile: fs.open})
	if err != nil {
		t.Fatal(err)
	}
	if !l.Reserving() {
		t.Fatal("the log does not reserve on a file system that can")
	}
	accepted := 0
	var refused error
	for i := 0; refused == nil; i++ {
		if i > 1<<20 {
			t.Fatal("appends never refused on a full disk")
		}
		refused = l.Append(impression("u"))
		if refused == nil {
			accepted++
		}
	}
	if !errors.Is(refused, ErrNoSpace) || !errors.Is(refused, syscall.ENOSPC) {
		t.Fatalf("Append on a full disk = %v, want ErrNoSpace for ENOSPC", refused)
	}
	if l.Err() != nil {
		t.Fatalf("Err() = %v: a write failed, though every accepted record had space", l.Err())
	}
	// The loss window holds though the disk is full: everything accepted
	// is fsync'd by the writer's own ticker, not only at Close.
	want := int64(walHeader + accepted*len(impression("u").buf))
	deadline := time.After(10 * time.Second)
	for fs.durable() < want {
		select {
		case <-fs.synced:
		case <-deadline:
			t.Fatalf("%d of %d accepted bytes fsync'd on a full disk", fs.durable(), want)
		}
	}
	// Still refused, and refused again after a retry of the reservation.
	if err := l.Append(impression("v")); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("second Append on a full disk = %v, want ErrNoSpace", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, st, err := collect(t, d)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != accepted || st.Torn != nil {
		t.Fatalf("replayed %d records (torn %v), want the %d accepted", len(got), st.Torn, accepted)
	}
	for _, r := range got {
		if string(r.User) != "u" {
			t.Fatalf("replayed a refused record %q", r.User)
		}
	}
	t.Logf("%d records accepted in %d bytes of disk", accepted, fs.capacity)
}

// TestFullDiskRecovers: once the disk has room again, the writer reserves
// again and appends are accepted.
func TestFullDiskRecovers(t *testing.T) {
	d := openTestDir(t)
	fs := newDisk(minReserve + 1<<10)
	l, err := OpenLog(d, 1, Options{FsyncInterval: time.Hour, Reserve: minReserve, OpenFile: fs.open})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for l.Append(impression("u")) == nil {
		n++
	}
	fs.set(func(d *disk) { d.capacity += 4 * minReserve })
	deadline := time.Now().Add(10 * time.Second)
	for l.Append(impression("w")) != nil {
		if time.Now().After(deadline) {
			t.Fatal("appends still refused 10s after the disk has room")
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
	if len(got) != n+1 || string(got[n].User) != "w" {
		t.Fatalf("replayed %d records, want %d then w", len(got), n+1)
	}
}

// TestRotateNeedsReservedSpace: a rotation that cannot reserve room in the
// new segment for every record promised fails, and the log goes on in the
// old segment, losing nothing.
func TestRotateNeedsReservedSpace(t *testing.T) {
	d := openTestDir(t)
	fs := newDisk(minReserve + 8<<10)
	l, err := OpenLog(d, 1, Options{FsyncInterval: time.Hour, Reserve: minReserve, OpenFile: fs.open})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(impression("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Rotate(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Rotate on a full disk = %v, want ENOSPC", err)
	}
	if err := l.Append(impression("b")); err != nil {
		t.Fatal(err)
	}
	fs.set(func(d *disk) { d.capacity += 2 * minReserve })
	seg, err := l.Rotate()
	if err != nil || seg != 2 {
		t.Fatalf("Rotate with room = %d, %v; want segment 2", seg, err)
	}
	if err := l.Append(impression("c")); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, _, err := collect(t, d)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || string(got[0].User)+string(got[1].User)+string(got[2].User) != "abc" {
		t.Fatalf("replayed %d records, want a, b, c", len(got))
	}
	// The rotation gave back segment 1's unused reservation.
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if b := fs.files[0].blocks; b != fs.files[0].size {
		t.Fatalf("segment 1 holds %d bytes of blocks for %d bytes", b, fs.files[0].size)
	}
}

// TestFailedCampaignIsRetracted: a campaign whose write fails (before,
// midway or after its bytes), or whose fsync fails, is answered with the
// error and never reaches the log, while an impression that fails the same
// way is kept and written once the disk works; the segment is cut back, so
// no damage is left behind.
func TestFailedCampaignIsRetracted(t *testing.T) {
	faults := map[string]func(d *disk){
		"write fails":        func(d *disk) { d.writeErr = 1 },
		"write fails midway": func(d *disk) { d.writeErr, d.partial = 1, 5 },
		"write fails after":  func(d *disk) { d.writeErr, d.partial = 1, 1<<20 },
		"fsync fails":        func(d *disk) { d.syncErr = 1 },
	}
	for name, fault := range faults {
		t.Run(name, func(t *testing.T) {
			d := openTestDir(t)
			fs := newDisk(1 << 30)
			l, err := OpenLog(d, 1, Options{FsyncInterval: 0, Reserve: minReserve, OpenFile: fs.open})
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Append(impression("before")); err != nil {
				t.Fatal(err)
			}
			fs.set(fault)
			var ghost Batch
			ghost.AddCampaign(9, "ghost", "Ghost", t0)
			if err := l.Append(&ghost); !errors.Is(err, syscall.EIO) {
				t.Fatalf("campaign Append on a failing disk = %v, want EIO", err)
			}
			fs.set(fault)
			if err := l.Append(impression("during")); !errors.Is(err, syscall.EIO) {
				t.Fatalf("impression Append on a failing disk = %v, want EIO", err)
			}
			if err := l.Append(impression("after")); err != nil {
				t.Fatalf("Append once the disk works: %v", err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			got, st, err := collect(t, d)
			if err != nil || st.Torn != nil {
				t.Fatalf("replay: %v (torn %v), want a clean log", err, st.Torn)
			}
			var users string
			for _, r := range got {
				if r.Kind == KindCampaign {
					t.Fatalf("the retracted campaign %q is in the log", r.ID)
				}
				users += string(r.User) + " "
			}
			if users != "before during after " {
				t.Fatalf("replayed %q, want before, during, after", users)
			}
		})
	}
}

// TestRetractionWaitsForTheCut: while the segment cannot be cut back, a
// failed campaign's Append does not return (an error now could be undone
// by a write already on disk); once the disk works it is written and
// Append succeeds.
func TestRetractionWaitsForTheCut(t *testing.T) {
	d := openTestDir(t)
	fs := newDisk(1 << 30)
	l, err := OpenLog(d, 1, Options{FsyncInterval: 0, Reserve: minReserve, OpenFile: fs.open})
	if err != nil {
		t.Fatal(err)
	}
	fs.set(func(d *disk) { d.writeErr, d.syncErr, d.failCut, d.partial = 1<<30, 1<<30, true, 1<<20 })
	var c Batch
	c.AddCampaign(9, "kept", "Kept", t0)
	done := make(chan error, 1)
	go func() { done <- l.Append(&c) }()
	<-fs.ioErrs // the campaign's write failed
	if err := l.Append(impression("x")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("impression Append on a failing disk = %v, want EIO", err)
	}
	select {
	case err := <-done:
		t.Fatalf("campaign Append returned %v before its retraction was durable", err)
	default:
	}
	fs.set(func(d *disk) { d.writeErr, d.syncErr, d.failCut = 0, 0, false })
	if err := <-done; err != nil {
		t.Fatalf("campaign Append once the disk works = %v, want nil (written)", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, _, err := collect(t, d)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Kind != KindCampaign || string(got[1].User) != "x" {
		t.Fatalf("replayed %+v, want the campaign then x", got)
	}
}
