package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// walMagic and walVersion open every log segment.
const (
	walMagic   = "IMPWAL"
	walVersion = 1
	walHeader  = len(walMagic) + 2
)

// File is what the log writes a segment to. The default, an *os.File,
// also implements Allocator and Truncater; a File without them runs the log
// without reserved space and without retraction (see Log.Reserve).
type File interface {
	io.Writer
	Sync() error
	Close() error
}

// Allocator reserves n bytes of a file's blocks from offset off on, without
// changing its size (fallocate(2) with FALLOC_FL_KEEP_SIZE), so that later
// writes into them cannot fail for want of space. errors.ErrUnsupported,
// EOPNOTSUPP or ENOSYS mean it cannot be done on this file system.
type Allocator interface {
	Allocate(off, n int64) error
}

// Truncater cuts a file to size bytes.
type Truncater interface {
	Truncate(size int64) error
}

// osFile is a segment on disk.
type osFile struct{ *os.File }

func (f osFile) Allocate(off, n int64) error { return allocate(f.File, off, n) }

// Options configure a Log.
type Options struct {
	// FsyncInterval is how often written records are fsync'd. Zero makes
	// Append wait for the group commit that fsyncs its records.
	FsyncInterval time.Duration

	// QueueLen bounds the records batches waiting for the writer; Append
	// blocks when it is full, which is the back-pressure of a slow disk.
	// By default 4096.
	QueueLen int

	// Reserve is how much disk space the log keeps reserved ahead of the
	// records it has promised to write. By default 16 MiB.
	Reserve int64

	// OpenFile creates a new segment file. By default os.OpenFile with
	// O_CREATE|O_EXCL|O_WRONLY; tests replace it to inject disk errors.
	OpenFile func(path string) (File, error)
}

// coalesce is how long the writer lets records gather between writes when
// nobody waits for them (FsyncInterval > 0).
const coalesce = time.Millisecond

// minReserve is the smallest reservation the writer asks for when the file
// system cannot give a whole Options.Reserve.
const minReserve = 64 << 10

var (
	// ErrClosed is returned by Append and Rotate after Close.
	ErrClosed = errors.New("store: log is closed")
	// ErrNoSpace is returned by Reserve when the disk has no room for the
	// records: nothing was promised, so the caller must change nothing.
	ErrNoSpace = errors.New("store: no disk space reserved for the log")
)

// Log is the write-ahead log: one writer goroutine appending to the current
// segment, fed through a channel. It is safe for concurrent use.
//
// # Disk space
//
// Where the file system can (Allocator), the log reserves disk blocks
// ahead of its writes, and a record is promised a place in them by Reserve
// before the caller changes any state. The writer only writes into
// reserved blocks, so a full disk never fails the write of a record that
// was accepted: once the reservation runs out, Reserve refuses, and the
// records already accepted are still written and fsync'd on time.
//
// # Failures
//
// When a write or an fsync fails anyway (an I/O error), the segment is cut
// back to its last fsync'd byte before anything more is written, and every
// record received since is written again. A record of a waiting batch
// marked for retraction (campaign creations) is then removed instead, and
// its Append fails: it never reaches the log. Its Append returns only once
// that is certain; until the cut is durable it keeps waiting, and if the
// records are written first it succeeds.
type Log struct {
	dir      *Dir
	interval time.Duration
	open     func(string) (File, error)
	chunk    int64
	ch       chan *request
	kick     chan struct{} // wakes the writer to reserve space
	stopCh   chan struct{}
	done     chan struct{}
	closed   atomic.Bool
	once     sync.Once
	err      atomic.Pointer[error] // the writer's last failure; nil once it recovers

	// credit is the reserved space not yet promised to a record; Reserve
	// takes from it, the writer adds to it as it reserves more.
	credit    atomic.Int64
	reserving atomic.Bool           // false once a file could not reserve
	spaceErr  atomic.Pointer[error] // why the last reservation failed
	starved   atomic.Bool           // a Reserve is waiting for credit
	spaceMu   sync.Mutex
	spaceCond *sync.Cond // broadcast when credit grows or reserving fails

	records atomic.Uint64
	bytes   atomic.Uint64
	fsyncs  atomic.Uint64

	// Owned by the writer goroutine.
	f       File
	seg     uint64
	size    int64    // bytes of the segment written and fsync'd
	end     int64    // the segment's reserved blocks end here
	buf     []byte   // records received, not yet fsync'd; buf[:wrote] are at size in the file
	wrote   int      // bytes of buf written
	cut     bool     // the file may hold bytes past size: cut them before writing
	waiters []waiter // requests waiting for their records to be fsync'd
}

// waiter is a request waiting for its records, buf[start:end], to be
// fsync'd.
type waiter struct {
	r          *request
	start, end int
}

// request carries one Append or Rotate to the writer.
type request struct {
	buf     []byte
	n       int
	rotate  bool
	wait    bool
	retract bool       // on failure, remove the records rather than retry them
	done    chan error // buffered; receives once when wait is set
	seg     uint64     // Rotate's result
}

var requests = sync.Pool{New: func() any { return &request{done: make(chan error, 1)} }}

// OpenLog starts a log writing a new segment numbered seg, which must not
// exist yet. If the segment cannot be created (a full disk), the log still
// starts, in the failed state (Err): the writer retries every second, so a
// server started on a full disk serves reads and refuses writes until the
// disk has room.
func OpenLog(dir *Dir, seg uint64, o Options) (*Log, error) {
	if o.QueueLen <= 0 {
		o.QueueLen = 4096
	}
	if o.Reserve <= 0 {
		o.Reserve = 16 << 20
	}
	if o.OpenFile == nil {
		o.OpenFile = func(path string) (File, error) {
			f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err != nil {
				return nil, err
			}
			return osFile{f}, nil
		}
	}
	l := &Log{
		dir:      dir,
		interval: o.FsyncInterval,
		open:     o.OpenFile,
		chunk:    max(o.Reserve, minReserve),
		ch:       make(chan *request, o.QueueLen),
		kick:     make(chan struct{}, 1),
		stopCh:   make(chan struct{}),
		done:     make(chan struct{}),
	}
	l.spaceCond = sync.NewCond(&l.spaceMu)
	l.reserving.Store(true)
	l.seg = seg
	if err := l.openSegment(seg); err != nil {
		l.fail(err)
		l.noSpace(err)
	} else {
		l.reserve()
	}
	go l.run()
	return l, nil
}

// Err returns the error that keeps the log from writing (a full or failing
// disk), or nil. The writer retries every second and clears it once a write
// and an fsync succeed; records appended meanwhile are kept in memory.
func (l *Log) Err() error {
	if p := l.err.Load(); p != nil {
		return *p
	}
	return nil
}

// SpaceErr returns why the log could not reserve more disk space, or nil.
// Reserve refuses with it once the space reserved before runs out.
func (l *Log) SpaceErr() error {
	if p := l.spaceErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Reserving reports whether the log reserves disk space ahead of its
// writes. It is false on a file system that cannot (see Allocator): there
// a full disk fails writes of records already accepted, which are then
// kept in memory and retried, and lost if the process dies meanwhile.
func (l *Log) Reserving() bool { return l.reserving.Load() }

// Reserve promises n bytes of records a place on disk. Call it before
// changing the state the records describe, and pass n to AppendReserved,
// or give it back with Release. It fails with ErrNoSpace, promising
// nothing, when the disk has no room, and with ErrClosed after Close; it
// waits only while the writer reserves more space.
func (l *Log) Reserve(n int) error {
	if !l.reserving.Load() {
		return nil
	}
	for {
		if l.credit.Add(-int64(n)) >= 0 {
			return nil
		}
		l.credit.Add(int64(n))
		if err := l.SpaceErr(); err != nil {
			return fmt.Errorf("%w: %w", ErrNoSpace, err)
		}
		l.spaceMu.Lock()
		for l.credit.Load() < int64(n) && l.SpaceErr() == nil && l.reserving.Load() && !l.closed.Load() {
			l.starved.Store(true)
			select {
			case l.kick <- struct{}{}:
			default:
			}
			l.spaceCond.Wait()
		}
		l.spaceMu.Unlock()
		if l.closed.Load() {
			return ErrClosed
		}
		if !l.reserving.Load() {
			return nil
		}
	}
}

// Release gives back n bytes taken by Reserve and not appended.
func (l *Log) Release(n int) {
	if n != 0 {
		l.credit.Add(int64(n))
	}
}

// Append reserves the batch's bytes and hands its records to the writer;
// see Reserve and AppendReserved. ErrNoSpace means nothing was appended.
func (l *Log) Append(b *Batch) error {
	if b.n == 0 {
		return nil
	}
	if err := l.Reserve(len(b.buf)); err != nil {
		return err
	}
	return l.AppendReserved(b, len(b.buf))
}

// AppendReserved hands the batch's records, which Reserve(reserved)
// promised a place, to the writer, and gives back what they do not use. It
// returns once they are queued, or, when FsyncInterval is zero or the batch
// holds a campaign, once they are fsync'd. The batch may be reused as soon
// as it returns.
//
// A campaign batch that fails is retracted: its records are never written
// (see Log). Any other failed batch may not be durable yet; its records are
// still kept and retried, so the caller must not apply them twice.
func (l *Log) AppendReserved(b *Batch, reserved int) error {
	if len(b.buf) > reserved && l.reserving.Load() {
		panic(fmt.Sprintf("BUG: %d bytes of log records appended with %d reserved", len(b.buf), reserved))
	}
	l.Release(reserved - len(b.buf))
	if b.n == 0 {
		return nil
	}
	if l.closed.Load() {
		l.Release(len(b.buf))
		return ErrClosed
	}
	r := requests.Get().(*request)
	r.buf = append(r.buf[:0], b.buf...)
	r.n = b.n
	r.rotate = false
	r.wait = b.sync || l.interval == 0
	r.retract = b.sync
	wait := r.wait // r belongs to the writer once sent
	done := r.done
	l.ch <- r
	if !wait {
		return nil
	}
	err := <-done
	requests.Put(r)
	return err
}

// Rotate closes the current segment, fsync'd, and starts the next one. It
// returns the new segment's number: every record appended before Rotate
// was called is in an older segment.
func (l *Log) Rotate() (uint64, error) {
	if l.closed.Load() {
		return 0, ErrClosed
	}
	r := requests.Get().(*request)
	r.buf, r.n, r.rotate, r.wait = r.buf[:0], 0, true, true
	l.ch <- r
	err := <-r.done
	seg := r.seg
	requests.Put(r)
	return seg, err
}

// Close writes and fsyncs every queued record and closes the segment. No
// Append or Rotate may run concurrently with or after Close.
func (l *Log) Close() error {
	l.once.Do(func() {
		l.closed.Store(true)
		l.broadcast()
		close(l.stopCh)
		<-l.done
	})
	return l.Err()
}

// LogStats are counters of the log's work since it was opened.
type LogStats struct {
	Records, Bytes, Fsyncs uint64
	// Reserved is the disk space reserved and not yet promised to a
	// record.
	Reserved int64
}

// Stats returns the counters.
func (l *Log) Stats() LogStats {
	return LogStats{Records: l.records.Load(), Bytes: l.bytes.Load(), Fsyncs: l.fsyncs.Load(), Reserved: max(l.credit.Load(), 0)}
}

func (l *Log) run() {
	defer close(l.done)
	tick := l.interval
	if tick <= 0 || tick > time.Second {
		tick = time.Second // also the retry period after a failure
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case r := <-l.ch:
			l.take(r)
			l.drain()
			l.flush(false)
			l.reserve()
			if l.interval > 0 {
				// Let the next records gather in the channel: appenders
				// then queue without waking the writer, one wake-up per
				// coalesce instead of one per request. Nobody waits on
				// these records; they reach the file within coalesce.
				time.Sleep(coalesce)
			}
		case <-l.kick:
			l.reserve()
		case <-t.C:
			l.flush(true)
			l.reserve()
		case <-l.stopCh:
			// Every queued record goes out, however many: with
			// FsyncInterval > 0 their appenders were answered already.
			// drain takes about 1 MiB at a time, so write as we go.
			for len(l.ch) > 0 && l.Err() == nil {
				l.drain()
				l.flush(false)
			}
			// After a failure the rest are taken all the same, so that
			// their waiters get the error from the flush below.
			for len(l.ch) > 0 {
				l.take(<-l.ch)
			}
			l.flush(true)
			if l.f != nil {
				if l.Err() == nil {
					l.truncate(l.f, l.size) // give back the blocks reserved past the end
				}
				l.f.Close()
			}
			return
		}
	}
}

// drain takes every request already queued, up to about 1 MiB of records
// not yet written: they all go out in one write and one fsync.
func (l *Log) drain() {
	for len(l.buf)-l.wrote < 1<<20 {
		select {
		case r := <-l.ch:
			l.take(r)
		default:
			return
		}
	}
}

func (l *Log) take(r *request) {
	if r.rotate {
		// Records taken before this request belong to the old segment.
		l.flush(true)
		err := l.Err()
		if err == nil {
			err = l.rotate()
		}
		r.seg = l.seg
		r.done <- err
		return
	}
	start := len(l.buf)
	l.buf = append(l.buf, r.buf...)
	l.records.Add(uint64(r.n))
	if r.wait {
		l.waiters = append(l.waiters, waiter{r: r, start: start, end: len(l.buf)})
	} else {
		requests.Put(r)
	}
}

// flush writes the records received, then fsyncs when a waiter needs it or
// sync is set. Failures are kept in Err (see fail). The error clears once
// everything received is written and fsync'd.
func (l *Log) flush(sync bool) {
	if l.f == nil {
		// The segment could not be created yet.
		if err := l.openSegment(l.seg); err != nil {
			l.fail(err)
			return
		}
		l.reserve()
	}
	if l.cut {
		if err := l.cutBack(); err != nil {
			l.fail(err)
			return
		}
	}
	if l.wrote < len(l.buf) {
		n, err := l.f.Write(l.buf[l.wrote:])
		l.bytes.Add(uint64(n))
		l.wrote += n
		if err != nil {
			l.fail(fmt.Errorf("store: cannot write log segment %d: %w", l.seg, err))
			return
		}
	}
	if l.wrote > 0 && (sync || len(l.waiters) > 0) {
		if err := l.f.Sync(); err != nil {
			l.fail(fmt.Errorf("store: cannot fsync log segment %d: %w", l.seg, err))
			return
		}
		l.fsyncs.Add(1)
		l.size += int64(l.wrote)
		l.buf = l.buf[:copy(l.buf, l.buf[l.wrote:])]
		l.wrote = 0
	}
	if l.wrote > 0 {
		return
	}
	for _, w := range l.waiters {
		w.r.done <- nil
	}
	l.waiters = l.waiters[:0]
	if l.err.Load() != nil {
		l.err.Store(nil)
	}
}

// fail records err and settles the waiters. Bytes written since the last
// fsync may or may not be on disk, so the segment is cut back to its last
// fsync'd byte and everything received since is written again. Once the
// cut is durable, retractable requests are removed from what is written
// again and answered err; until then they keep waiting. The others are
// answered err at once and their records kept.
func (l *Log) fail(err error) {
	l.err.Store(&err)
	if l.wrote > 0 {
		l.cut = true
		l.wrote = 0
	}
	if l.cut && l.cutBack() != nil {
		kept := l.waiters[:0]
		for _, w := range l.waiters {
			if w.r.retract {
				kept = append(kept, w)
			} else {
				w.r.done <- err
			}
		}
		l.waiters = kept
		return
	}
	for i := len(l.waiters) - 1; i >= 0; i-- {
		w := l.waiters[i]
		if w.r.retract {
			l.buf = append(l.buf[:w.start], l.buf[w.end:]...)
			l.records.Add(^uint64(w.r.n - 1))
			l.Release(w.end - w.start)
		}
		w.r.done <- err
	}
	l.waiters = l.waiters[:0]
}

// cutBack truncates the segment to its last fsync'd byte, durably.
func (l *Log) cutBack() error {
	if l.f == nil {
		l.cut = false
		return nil
	}
	err := l.truncate(l.f, l.size)
	if err == nil {
		// The next write goes where the cut is, not where the last one
		// ended: that would leave a hole of zeros.
		err = errors.ErrUnsupported
		if sk, ok := l.f.(io.Seeker); ok {
			_, err = sk.Seek(l.size, io.SeekStart)
		}
	}
	if err != nil {
		return fmt.Errorf("store: cannot cut log segment %d back to %d bytes after a failed write: %w", l.seg, l.size, err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("store: cannot fsync log segment %d after cutting it back: %w", l.seg, err)
	}
	l.cut = false
	return nil
}

func (l *Log) truncate(f File, size int64) error {
	t, ok := f.(Truncater)
	if !ok {
		return errors.ErrUnsupported
	}
	return t.Truncate(size)
}

// reserve keeps Options.Reserve of credit ahead of the records promised,
// and more while a Reserve waits. On a file system that has less room, it
// takes what it can, down to minReserve, and records why in SpaceErr.
func (l *Log) reserve() {
	if !l.reserving.Load() || l.f == nil {
		return
	}
	if l.credit.Load() >= l.chunk/2 && !l.starved.Load() {
		return
	}
	a, ok := l.f.(Allocator)
	if !ok {
		l.stopReserving()
		return
	}
	for n := l.chunk; ; n /= 2 {
		err := a.Allocate(l.end, n)
		if err == nil {
			l.end += n
			l.credit.Add(n)
			l.spaceErr.Store(nil)
			l.starved.Store(false)
			l.broadcast()
			return
		}
		if unsupported(err) {
			l.stopReserving()
			return
		}
		if n <= minReserve {
			l.noSpace(fmt.Errorf("store: cannot reserve disk space for log segment %d: %w", l.seg, err))
			return
		}
	}
}

func (l *Log) noSpace(err error) {
	l.spaceErr.Store(&err)
	l.starved.Store(false)
	l.broadcast()
}

func (l *Log) stopReserving() {
	l.reserving.Store(false)
	l.broadcast()
}

func (l *Log) broadcast() {
	l.spaceMu.Lock()
	l.spaceCond.Broadcast()
	l.spaceMu.Unlock()
}

func unsupported(err error) bool {
	return errors.Is(err, errors.ErrUnsupported) || errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOSYS)
}

// rotate moves to the next segment; the current one is written and
// fsync'd. The new segment must reserve room for every record promised and
// not yet received, or the rotation fails and the log stays where it is.
func (l *Log) rotate() error {
	old, seg := l.f, l.seg
	if old == nil {
		return errors.New("store: no log segment to rotate")
	}
	oldSize, oldEnd := l.size, l.end
	if err := l.openSegment(seg + 1); err != nil {
		l.f, l.seg, l.size, l.end = old, seg, oldSize, oldEnd
		return err // still writing to the old segment
	}
	if l.reserving.Load() {
		promised := oldEnd - oldSize - l.credit.Load()
		want := max(l.chunk, promised+l.chunk/2)
		err := errors.ErrUnsupported
		if a, ok := l.f.(Allocator); ok {
			err = a.Allocate(l.end, want)
		}
		switch {
		case err == nil:
			l.end += want
			l.credit.Add(want - (oldEnd - oldSize))
			l.broadcast()
		case unsupported(err):
			l.stopReserving()
		default:
			path := l.dir.segmentPath(seg + 1)
			l.f.Close()
			os.Remove(path)
			l.f, l.seg, l.size, l.end = old, seg, oldSize, oldEnd
			l.noSpace(fmt.Errorf("store: cannot reserve disk space for log segment %d: %w", seg+1, err))
			return l.SpaceErr()
		}
		l.truncate(old, oldSize) // give back the old segment's unused blocks
	}
	if err := old.Close(); err != nil {
		return fmt.Errorf("store: cannot close log segment %d: %w", seg, err)
	}
	return nil
}

// openSegment creates segment n with its header, durable along with its
// directory entry, and makes it the current one.
func (l *Log) openSegment(n uint64) error {
	path := l.dir.segmentPath(n)
	f, err := l.open(path)
	if err != nil {
		return fmt.Errorf("store: cannot create log segment: %w", err)
	}
	hdr := binary.LittleEndian.AppendUint16([]byte(walMagic), walVersion)
	_, err = f.Write(hdr)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = l.dir.syncDir()
	}
	if err != nil {
		f.Close()
		os.Remove(path) // so that the next attempt can create it again
		return fmt.Errorf("store: cannot start log segment %s: %w", path, err)
	}
	l.f, l.seg = f, n
	l.size, l.end = int64(len(hdr)), int64(len(hdr))
	return nil
}
