package api

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/impressiond/impressiond/sketch"
	"github.com/impressiond/impressiond/stats"
	"github.com/impressiond/impressiond/store"
)

// Persistence, when Options.DataDir is set: every state change (a counted
// impression, a created campaign) is appended to the write-ahead log while
// the request holds gate shared; a snapshot takes gate exclusively just long
// enough to cut the log (Rotate) and copy the counters, so the counters it
// writes hold exactly the records of the segments before the cut.
//
// The dedup window is written after the gate is released, one shard at a
// time, so it may also hold pairs of records after the cut. That is safe
// because replay does not ask the window whether to count: a record exists
// only for an impression that was counted, so replay counts it and adds its
// pair, and adding a pair twice changes nothing.

// Snapshot section kinds.
const (
	sectionMeta      = 1
	sectionCampaigns = 2
	sectionDedup     = 3
)

// testHookOpenLogFile, when set by a test, creates the log's segment files
// (to inject disk errors).
var testHookOpenLogFile func(path string) (store.File, error)

// testHookLogReserve, when set by a test, is the disk space the log
// reserves ahead (store.Options.Reserve).
var testHookLogReserve int64

// persister owns the data directory and the log of a durable Server.
type persister struct {
	dir   *store.Dir
	log   *store.Log
	every time.Duration
	// gate is held shared by every request from its state change to its
	// log append, and exclusively by a snapshot while it cuts the log and
	// copies the counters.
	gate    sync.RWMutex
	snapMu  sync.Mutex // one snapshot at a time
	batches sync.Pool  // *store.Batch

	// What decides whether a snapshot is due (snapshotIfChanged):
	// snapRecords and snapLogBytes are the log's record and byte counts
	// at the cut of the last good snapshot (snapLogBytes less the bytes
	// replayed at start-up, which no snapshot holds yet), snapSize that
	// snapshot's size, and unsnapped is set while records replayed at
	// start-up are in no snapshot.
	snapRecords      atomic.Uint64
	snapLogBytes     atomic.Int64
	snapSize         atomic.Int64
	unsnapped        atomic.Bool
	snapshotsSkipped atomic.Uint64 // periodic snapshots not due

	lastSnapshot     atomic.Int64  // unix seconds of the last good snapshot
	snapshotDuration atomic.Int64  // its duration, in nanoseconds
	snapshotPause    atomic.Int64  // how long it held the gate, in nanoseconds
	snapshotFailures atomic.Uint64 // snapshots that failed
	snapshotBytes    atomic.Uint64 // bytes of the snapshots written
}

func (p *persister) batch() *store.Batch {
	if b, ok := p.batches.Get().(*store.Batch); ok {
		b.Reset()
		return b
	}
	return new(store.Batch)
}

// errStorage answers writes while the log cannot write: 503, reads go on.
func errStorage(err error) *apiError {
	return errorf(fasthttp.StatusServiceUnavailable, "storage unavailable, nothing was counted or created by this request; retry later: %s", storageReason(err))
}

// errNotDurable answers a write whose records were applied in memory but
// could not be made durable. A retry is safe: it finds the impression
// already counted and answers duplicate.
func errNotDurable(err error) *apiError {
	return errorf(fasthttp.StatusServiceUnavailable, "storage unavailable, the request may not survive a restart; retrying it is safe: %s", storageReason(err))
}

// storageReason says what kind of failure err is, for clients: the
// operating system's words for it ("no space left on device"), never the
// file names and paths of the data directory the full error carries, which
// the server's log has.
func storageReason(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return "the data directory cannot be written (see the server's log)"
}

// RestoreStats describe what New restored from the data directory.
type RestoreStats struct {
	Snapshot    string        // file loaded, empty if none
	SnapshotAge time.Duration // how old it was
	Campaigns   int           // campaigns restored
	Segments    int           // log segments replayed
	Records     uint64        // log records replayed
	Torn        error         // a torn write cut off the log's end, if any
	Took        time.Duration
	// NewSecret is true when the directory had no secret yet and New drew
	// one (a new directory, or an exact-mode one of an earlier version).
	NewSecret bool
	// DedupReset names why the dedup window was started empty under
	// Options.ResetDedup, and is empty when it was restored.
	DedupReset string

	logBytes     int64 // bytes of log replayed
	snapshotSize int64 // bytes of the snapshot loaded

	secretStored bool // the directory's secret file holds the window's secret
	unkeyed      bool // the log's Bloom keys were hashed without a secret (ResetDedup)
	resetDedup   bool // Options.ResetDedup
}

// openStore restores the server's state from dir, then opens the log for
// appending. Damage to the data stops it with an error naming the file and
// offset: the server must not serve from partial state.
func (s *Server) openStore(o *Options) error {
	start := time.Now()
	dir, err := store.OpenDir(o.DataDir)
	if err != nil {
		return err
	}
	st := &s.restored
	st.resetDedup = o.ResetDedup
	next, err := s.restore(dir, st)
	if err != nil {
		dir.Close()
		return err
	}
	if !st.secretStored {
		// Before the log opens: its first record must find the secret
		// it was hashed with on disk, whatever crashes after.
		if err := dir.CreateSecret(s.dedup.Hasher().Secret()); err != nil {
			dir.Close()
			return err
		}
	}
	s.dedup.Advance(s.now())
	log, err := store.OpenLog(dir, next, store.Options{FsyncInterval: o.FsyncInterval, OpenFile: testHookOpenLogFile, Reserve: testHookLogReserve})
	if err != nil {
		dir.Close()
		return err
	}
	s.persist = &persister{dir: dir, log: log, every: o.SnapshotInterval}
	s.persist.unsnapped.Store(st.Records > 0)
	s.persist.snapLogBytes.Store(-st.logBytes)
	s.persist.snapSize.Store(st.snapshotSize)
	if !log.Reserving() {
		s.log.Warn("the data directory's file system cannot reserve space (fallocate): a full disk fails writes of impressions already acknowledged, which are kept in memory and lost if the process stops before the disk has room", "data_dir", o.DataDir)
	}
	if st.DedupReset != "" {
		// At once, before any request: the snapshot replaces the state
		// that could not be loaded, so the next start needs no reset (and
		// would otherwise drop this run's pairs as well).
		if err := s.Snapshot(); err != nil {
			return err
		}
	}
	st.Took = time.Since(start)
	return nil
}

// restore loads the newest snapshot and replays the log after it. It
// returns the number of the segment to open next.
func (s *Server) restore(dir *store.Dir, st *RestoreStats) (uint64, error) {
	seg, ok, err := dir.LatestSnapshot()
	if err != nil {
		return 0, err
	}
	var snap *store.SnapshotReader
	var meta snapshotMeta
	if ok {
		if snap, err = dir.OpenSnapshot(seg); err != nil {
			return 0, err
		}
		defer snap.Close()
		st.Snapshot = snap.Path()
		if fi, err := os.Stat(snap.Path()); err == nil {
			st.snapshotSize = fi.Size()
		}
		if meta, err = readMeta(snap); err != nil {
			return 0, err
		}
		st.SnapshotAge = s.now().Sub(meta.taken)
	}
	if err := s.adoptSecret(dir, snap, meta, st); err != nil {
		return 0, err
	}
	if snap != nil {
		if err := s.loadSnapshot(snap, st); err != nil {
			return 0, err
		}
	}
	byIndex := make(map[uint32]*campaign)
	for _, c := range s.campaigns.list() {
		byIndex[c.index] = c
	}
	now := s.now()
	nowMin := stats.Minute(now)
	keyed, _ := s.dedup.(keyedDeduper)
	add := s.dedup.Add
	if x, ok := s.dedup.(*sketch.Exact); ok {
		// Gathers the pairs and builds each map once, at its size.
		l := x.Loader()
		defer l.Close()
		add = l.Add
	}
	rs, err := dir.Replay(seg, func(r *store.Record) error {
		switch r.Kind {
		case store.KindCampaign:
			c := &campaign{index: r.Campaign, id: string(r.ID), name: string(r.Name), start: r.Start}
			if old := byIndex[c.index]; old != nil {
				return fmt.Errorf("campaign index %d created twice (%q, %q)", c.index, old.id, c.id)
			}
			if err := s.campaigns.restore(c); err != nil {
				return err
			}
			byIndex[c.index] = c
		case store.KindImpression:
			c := byIndex[r.Campaign]
			if c == nil {
				return fmt.Errorf("impression of unknown campaign index %d", r.Campaign)
			}
			// Add, not TestAndAdd: the record is a pair counted at
			// r.Arrival, so it goes to that slice's generation, which
			// the snapshot may already hold it in; nothing else may.
			switch {
			case r.User != nil:
				add([]byte(c.id), r.User, r.Arrival)
			case keyed != nil && st.unkeyed:
				// Hashed without a secret (ResetDedup): the key means
				// nothing to this window; the record is only counted.
			case keyed != nil:
				keyed.AddKey(sketch.Key{Lo: r.KeyLo, Hi: r.KeyHi}, r.Arrival)
			default:
				return errors.New("record holds a pair's hash, not its user id: the log was written with -dedup bloom")
			}
			c.counter.Add(r.Minute, nowMin)
		}
		return nil
	})
	st.Segments, st.Records, st.logBytes = rs.Segments, rs.Records, rs.Bytes
	if rs.Torn != nil {
		st.Torn = rs.Torn
	}
	if err != nil {
		return 0, err
	}
	st.Campaigns = int(s.campaigns.count.Load())
	segs, err := dir.Segments()
	if err != nil {
		return 0, err
	}
	next := max(seg, 1)
	if len(segs) > 0 {
		next = max(next, segs[len(segs)-1]+1)
	}
	return next, nil
}

// keyedDeduper is a window that takes pre-hashed pairs: Bloom. Its log
// records carry the 16-byte key instead of the user id.
type keyedDeduper interface {
	TestAndAddKey(key sketch.Key, now time.Time) bool
	AddKey(key sketch.Key, at time.Time)
}

// loadSnapshot reads the sections after the meta section of r: the
// campaigns and the dedup window.
func (s *Server) loadSnapshot(r *store.SnapshotReader, st *RestoreStats) error {
	if err := r.Section(sectionCampaigns, s.readCampaigns); err != nil {
		return err
	}
	err := r.Section(sectionDedup, func(rd io.Reader) error {
		if st.unkeyed {
			_, err := io.Copy(io.Discard, rd) // the checksum is still checked
			return err
		}
		_, err := s.dedup.ReadFrom(rd)
		if errors.Is(err, sketch.ErrLayoutMismatch) && st.resetDedup {
			st.DedupReset = err.Error()
			_, err = io.Copy(io.Discard, rd)
			return err
		}
		if errors.Is(err, sketch.ErrLayoutMismatch) {
			return fmt.Errorf("%w; start with the -dedup flags the data was written with, or once with -dedup-reset to keep the campaigns and counts with an empty dedup window (repeats of the last TTL are then counted again), or move the data directory away", err)
		}
		return err
	})
	if err != nil {
		return err
	}
	return r.End()
}

// Snapshot writes a snapshot of the whole state and deletes the log
// segments it covers. Requests pause only while the log is cut and the
// counters are copied.
func (s *Server) Snapshot() error {
	p := s.persist
	if p == nil {
		return errors.New("api: Snapshot needs Options.DataDir")
	}
	p.snapMu.Lock()
	defer p.snapMu.Unlock()
	return s.snapshotLocked(p)
}

// snapshotIfChanged writes a snapshot when one is due: the state changed
// since the last snapshot (a record was appended after its cut, or records
// replayed at start-up are in none), and the log written since is at least
// as large as that snapshot, so that writing one costs no more than the
// log it replaces. An idle server writes nothing; a busy one writes about
// as many snapshot bytes as log bytes, and a start-up replays at most one
// snapshot's size of log on top of the interval's. It reports whether it
// wrote one.
func (s *Server) snapshotIfChanged() (bool, error) {
	p := s.persist
	p.snapMu.Lock()
	defer p.snapMu.Unlock()
	ls := p.log.Stats()
	changed := ls.Records != p.snapRecords.Load() || p.unsnapped.Load()
	if !changed || int64(ls.Bytes)-p.snapLogBytes.Load() < p.snapSize.Load() {
		p.snapshotsSkipped.Add(1)
		return false, nil
	}
	return true, s.snapshotLocked(p)
}

func (s *Server) snapshotLocked(p *persister) error {
	start := time.Now()
	err := s.snapshot(p)
	if err != nil {
		p.snapshotFailures.Add(1)
		return err
	}
	p.snapshotDuration.Store(int64(time.Since(start)))
	p.lastSnapshot.Store(time.Now().Unix())
	return nil
}

func (s *Server) snapshot(p *persister) error {
	paused := time.Now()
	p.gate.Lock()
	seg, err := p.log.Rotate()
	if err != nil {
		p.gate.Unlock()
		return err
	}
	cut := p.log.Stats() // nothing is appended while the gate is held
	camps := s.appendCampaigns(nil)
	p.gate.Unlock()
	p.snapshotPause.Store(int64(time.Since(paused)))

	w, err := p.dir.CreateSnapshot(seg)
	if err != nil {
		return err
	}
	defer w.Abort()
	err = w.Section(sectionMeta, func(wr io.Writer) error {
		_, err := wr.Write(snapshotMeta{taken: s.now(), secret: s.dedup.Hasher().Secret(), keyed: true}.append(nil))
		return err
	})
	if err == nil {
		err = w.Section(sectionCampaigns, func(wr io.Writer) error { _, err := wr.Write(camps); return err })
	}
	if err == nil {
		err = w.Section(sectionDedup, func(wr io.Writer) error { _, err := s.dedup.WriteTo(wr); return err })
	}
	if err == nil {
		err = w.Commit()
	}
	if err != nil {
		return err
	}
	p.snapRecords.Store(cut.Records)
	p.snapLogBytes.Store(int64(cut.Bytes))
	p.snapSize.Store(w.Size())
	p.snapshotBytes.Add(uint64(w.Size()))
	p.unsnapped.Store(false)
	return p.dir.RemoveBefore(seg)
}

// appendCampaigns encodes every campaign: count, then per campaign its
// index, id, name, start and counter.
func (s *Server) appendCampaigns(b []byte) []byte {
	all := s.campaigns.list()
	b = binary.AppendUvarint(b, uint64(len(all)))
	for _, c := range all {
		b = binary.AppendUvarint(b, uint64(c.index))
		b = appendString(b, c.id)
		b = appendString(b, c.name)
		b = binary.LittleEndian.AppendUint64(b, uint64(c.start.UnixNano()))
		n := len(b)
		b = append(b, 0, 0, 0, 0)
		b, _ = c.counter.AppendBinary(b)
		binary.LittleEndian.PutUint32(b[n:], uint32(len(b)-n-4))
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errCampaignsSection = errors.New("malformed campaigns section")

// readCampaigns decodes appendCampaigns' encoding into the campaign table.
func (s *Server) readCampaigns(rd io.Reader) error {
	r := bufio.NewReader(rd)
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return err
	}
	str := func() (string, error) {
		l, err := binary.ReadUvarint(r)
		if err != nil || l > 1<<16 {
			return "", errCampaignsSection
		}
		b := make([]byte, l)
		_, err = io.ReadFull(r, b)
		return string(b), err
	}
	var fixed [8]byte
	var counter []byte
	for range n {
		idx, err := binary.ReadUvarint(r)
		if err != nil || idx > 1<<32-1 {
			return errCampaignsSection
		}
		c := &campaign{index: uint32(idx)}
		if c.id, err = str(); err != nil {
			return err
		}
		if c.name, err = str(); err != nil {
			return err
		}
		if _, err := io.ReadFull(r, fixed[:]); err != nil {
			return err
		}
		c.start = time.Unix(0, int64(binary.LittleEndian.Uint64(fixed[:]))).UTC()
		if _, err := io.ReadFull(r, fixed[:4]); err != nil {
			return err
		}
		l := binary.LittleEndian.Uint32(fixed[:4])
		if l > 16+8*stats.Minutes {
			return errCampaignsSection
		}
		counter = append(counter[:0], make([]byte, l)...)
		if _, err := io.ReadFull(r, counter); err != nil {
			return err
		}
		if err := c.counter.UnmarshalBinary(counter); err != nil {
			return err
		}
		if err := s.campaigns.restore(c); err != nil {
			return err
		}
	}
	if _, err := r.ReadByte(); err != io.EOF {
		return errCampaignsSection
	}
	return nil
}

// closeStore writes a last snapshot if asked, then flushes and closes the
// log and releases the directory.
func (s *Server) closeStore(snapshot bool) error {
	p := s.persist
	var errs []error
	if snapshot {
		// The log holds everything a failed snapshot would have: say so,
		// but the shutdown is clean (the next start replays the log).
		if _, err := s.snapshotIfChanged(); err != nil {
			s.log.Error("final snapshot failed; the log holds every acknowledged write and is replayed at the next start", "err", err)
		}
	}
	errs = append(errs, p.log.Close(), p.dir.Close())
	return errors.Join(errs...)
}

func (s *Server) writeStoreMetrics(w io.Writer, help func(name, typ, text string)) {
	p := s.persist
	if p == nil {
		return
	}
	ls := p.log.Stats()
	help("impressiond_wal_records_total", "counter", "Records appended to the write-ahead log.")
	fmt.Fprintf(w, "impressiond_wal_records_total %d\n", ls.Records)
	help("impressiond_wal_bytes_total", "counter", "Bytes written to the write-ahead log.")
	fmt.Fprintf(w, "impressiond_wal_bytes_total %d\n", ls.Bytes)
	help("impressiond_wal_fsyncs_total", "counter", "Group commits fsync'd.")
	fmt.Fprintf(w, "impressiond_wal_fsyncs_total %d\n", ls.Fsyncs)
	healthy := 1
	if p.log.Err() != nil || p.log.SpaceErr() != nil {
		healthy = 0
	}
	help("impressiond_storage_healthy", "gauge", "1 while the log writes, fsyncs and can reserve disk space; 0 when it cannot (disk full or failing): writes get 503 once the space reserved before is used up.")
	fmt.Fprintf(w, "impressiond_storage_healthy %d\n", healthy)
	help("impressiond_snapshot_last_success_timestamp_seconds", "gauge", "Unix time of the last snapshot written.")
	fmt.Fprintf(w, "impressiond_snapshot_last_success_timestamp_seconds %d\n", p.lastSnapshot.Load())
	help("impressiond_snapshot_duration_seconds", "gauge", "Time the last snapshot took.")
	fmt.Fprintf(w, "impressiond_snapshot_duration_seconds %g\n", time.Duration(p.snapshotDuration.Load()).Seconds())
	help("impressiond_snapshot_pause_seconds", "gauge", "How long the last snapshot held writes (log rotation and counter copy), including the wait for writes in flight.")
	fmt.Fprintf(w, "impressiond_snapshot_pause_seconds %g\n", time.Duration(p.snapshotPause.Load()).Seconds())
	help("impressiond_snapshot_failures_total", "counter", "Snapshots that failed.")
	fmt.Fprintf(w, "impressiond_snapshot_failures_total %d\n", p.snapshotFailures.Load())
	help("impressiond_snapshot_bytes_total", "counter", "Bytes of the snapshots written; with impressiond_wal_bytes_total, the data directory's write volume.")
	fmt.Fprintf(w, "impressiond_snapshot_bytes_total %d\n", p.snapshotBytes.Load())
	help("impressiond_snapshot_skipped_total", "counter", "Periodic snapshots skipped: nothing changed since the last one, or the log written since is smaller than it.")
	fmt.Fprintf(w, "impressiond_snapshot_skipped_total %d\n", p.snapshotsSkipped.Load())
	help("impressiond_wal_reserved_bytes", "gauge", "Disk space the log has reserved and not yet promised to a record; writes get 503 when it is used up and the disk has no more.")
	fmt.Fprintf(w, "impressiond_wal_reserved_bytes %d\n", ls.Reserved)
}
