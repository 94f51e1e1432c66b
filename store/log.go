package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// walMagic and walVersion open every log segment.
const (
	walMagic   = "IMPWAL"
	walVersion = 1
	walHeader  = len(walMagic) + 2
)

// File is what the log writes a segment to; *os.File implements it.
type File interface {
	io.Writer
	Sync() error
	Close() error
}

// Options configure a Log.
type Options struct {
	// FsyncInterval is how often written records are fsync'd. Zero makes
	// Append wait for the group commit that fsyncs its records.
	FsyncInterval time.Duration

	// QueueLen bounds the records batches waiting for the writer; Append
	// blocks when it is full, which is the back-pressure of a slow disk.
	// By default 4096.
	QueueLen int

	// OpenFile creates a new segment file. By default os.OpenFile with
	// O_CREATE|O_EXCL|O_WRONLY; tests replace it to inject disk errors.
	OpenFile func(path string) (File, error)
}

// coalesce is how long the writer lets records gather between writes when
// nobody waits for them (FsyncInterval > 0).
const coalesce = time.Millisecond

// ErrClosed is returned by Append and Rotate after Close.
var ErrClosed = errors.New("store: log is closed")

// Log is the write-ahead log: one writer goroutine appending to the current
// segment, fed through a channel. It is safe for concurrent use.
type Log struct {
	dir      *Dir
	interval time.Duration
	open     func(string) (File, error)
	ch       chan *request
	stopCh   chan struct{}
	done     chan struct{}
	closed   atomic.Bool
	once     sync.Once
	err      atomic.Pointer[error] // the writer's last failure; nil once it recovers

	records atomic.Uint64
	bytes   atomic.Uint64
	fsyncs  atomic.Uint64

	// Owned by the writer goroutine.
	f       File
	seg     uint64
	pending []byte     // records received, not yet written
	waiters []*request // requests waiting for their records to be fsync'd
	dirty   bool       // written since the last fsync
}

// request carries one Append or Rotate to the writer.
type request struct {
	buf    []byte
	n      int
	rotate bool
	wait   bool
	done   chan error // buffered; receives once when wait is set
	seg    uint64     // Rotate's result
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
	if o.OpenFile == nil {
		o.OpenFile = func(path string) (File, error) {
			return os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		}
	}
	l := &Log{
		dir:      dir,
		interval: o.FsyncInterval,
		open:     o.OpenFile,
		ch:       make(chan *request, o.QueueLen),
		stopCh:   make(chan struct{}),
		done:     make(chan struct{}),
	}
	l.seg = seg
	if err := l.openSegment(seg); err != nil {
		l.fail(err)
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

// Append hands the batch's records to the writer. It returns once they are
// queued, or, when FsyncInterval is zero or the batch holds a campaign,
// once they are fsync'd. The batch may be reused as soon as Append returns.
// An error means the records may not be durable yet; they are still kept
// and retried, so the caller must not apply them twice.
func (l *Log) Append(b *Batch) error {
	if b.n == 0 {
		return nil
	}
	if l.closed.Load() {
		return ErrClosed
	}
	r := requests.Get().(*request)
	r.buf = append(r.buf[:0], b.buf...)
	r.n = b.n
	r.rotate = false
	r.wait = b.sync || l.interval == 0
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
		close(l.stopCh)
		<-l.done
	})
	return l.Err()
}

// LogStats are counters of the log's work since it was opened.
type LogStats struct {
	Records, Bytes, Fsyncs uint64
}

// Stats returns the counters.
func (l *Log) Stats() LogStats {
	return LogStats{Records: l.records.Load(), Bytes: l.bytes.Load(), Fsyncs: l.fsyncs.Load()}
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
			if l.interval > 0 {
				// Let the next records gather in the channel: appenders
				// then queue without waking the writer, one wake-up per
				// coalesce instead of one per request. Nobody waits on
				// these records; they reach the file within coalesce.
				time.Sleep(coalesce)
			}
		case <-t.C:
			l.flush(true)
		case <-l.stopCh:
			l.drain()
			l.flush(true)
			if l.f != nil {
				l.f.Close()
			}
			return
		}
	}
}

// drain takes every request already queued, up to about 1 MiB of records:
// they all go out in one write and one fsync.
func (l *Log) drain() {
	for len(l.pending) < 1<<20 {
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
	l.pending = append(l.pending, r.buf...)
	l.records.Add(uint64(r.n))
	if r.wait {
		l.waiters = append(l.waiters, r)
	} else {
		requests.Put(r)
	}
}

// flush writes the pending records, then fsyncs when a waiter needs it or
// sync is set. Failures are kept in Err and passed to the waiters; the
// records stay pending for the next attempt. The error clears once
// everything received is written and fsync'd.
func (l *Log) flush(sync bool) {
	if l.f == nil {
		// The segment could not be created yet.
		if err := l.openSegment(l.seg); err != nil {
			l.fail(err)
			return
		}
	}
	if len(l.pending) > 0 {
		n, err := l.f.Write(l.pending)
		l.bytes.Add(uint64(n))
		l.pending = l.pending[:copy(l.pending, l.pending[n:])]
		l.dirty = l.dirty || n > 0
		if err != nil {
			l.fail(fmt.Errorf("store: cannot write log segment %d: %w", l.seg, err))
			return
		}
	}
	if l.dirty && (sync || len(l.waiters) > 0) {
		if err := l.f.Sync(); err != nil {
			l.fail(fmt.Errorf("store: cannot fsync log segment %d: %w", l.seg, err))
			return
		}
		l.fsyncs.Add(1)
		l.dirty = false
	}
	if l.dirty {
		return
	}
	for _, w := range l.waiters {
		w.done <- nil
	}
	l.waiters = l.waiters[:0]
	if l.err.Load() != nil {
		l.err.Store(nil)
	}
}

func (l *Log) fail(err error) {
	l.err.Store(&err)
	for _, w := range l.waiters {
		w.done <- err
	}
	l.waiters = l.waiters[:0]
}

func (l *Log) rotate() error {
	old, seg := l.f, l.seg
	if old == nil {
		return errors.New("store: no log segment to rotate")
	}
	if err := l.openSegment(seg + 1); err != nil {
		return err // still writing to the old segment
	}
	if err := old.Close(); err != nil {
		return fmt.Errorf("store: cannot close log segment %d: %w", seg, err)
	}
	return nil
}

// openSegment creates segment n with its header, durable along with its
// directory entry.
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
	return nil
}
