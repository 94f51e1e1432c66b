package tracker

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

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
	// sectionFrequency holds the exposures of frequency caps (version 4
	// and later), after the dedup window.
	sectionFrequency = 4
)

// persister owns the data directory and the log of a durable local state.
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

// openStore restores the state from the data directory, then opens the log for
// appending. Damage to the data stops it with an error naming the file and
// offset: nothing must be served from partial state.
func (l *local) openStore(o *Options, st *RestoreStats) error {
	start := time.Now()
	dir, err := store.OpenDir(o.DataDir)
	if err != nil {
		return err
	}
	st.resetDedup = o.ResetDedup
	next, err := l.restore(dir, st)
	if err != nil {
		dir.Close()
		return err
	}
	if !st.secretStored {
		// Before the log opens: its first record must find the secret
		// it was hashed with on disk, whatever crashes after.
		if err := dir.CreateSecret(l.dedup.Hasher().Secret()); err != nil {
			dir.Close()
			return err
		}
	}
	l.dedup.Advance(l.now())
	log, err := store.OpenLog(dir, next, store.Options{FsyncInterval: o.FsyncInterval, OpenFile: o.OpenLogFile, Reserve: o.LogReserve})
	if err != nil {
		dir.Close()
		return err
	}
	l.persist = &persister{dir: dir, log: log, every: o.SnapshotInterval}
	l.persist.unsnapped.Store(st.Records > 0)
	l.persist.snapLogBytes.Store(-st.logBytes)
	l.persist.snapSize.Store(st.snapshotSize)
	if !log.Reserving() {
		l.log.Warn("the data directory's file system cannot reserve space (fallocate): a full disk fails writes of impressions already acknowledged, which are kept in memory and lost if the process stops before the disk has room", "data_dir", o.DataDir)
	}
	if st.DedupReset != "" {
		// At once, before any request: the snapshot replaces the state
		// that could not be loaded, so the next start needs no reset (and
		// would otherwise drop this run's pairs as well).
		if err := l.snapshot(); err != nil {
			log.Close()
			dir.Close() // the directory's lock goes with it: a retry can open it
			return err
		}
	}
	st.Took = time.Since(start)
	return nil
}

// restore loads the newest snapshot and replays the log after it. It
// returns the number of the segment to open next.
func (l *local) restore(dir *store.Dir, st *RestoreStats) (uint64, error) {
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
		st.SnapshotAge = l.now().Sub(meta.taken)
	}
	if err := l.adoptSecret(dir, snap, meta, st); err != nil {
		return 0, err
	}
	if snap != nil {
		if err := l.loadSnapshot(snap, meta.version, st); err != nil {
			return 0, err
		}
	}
	byIndex := make(map[uint32]*Campaign)
	for _, c := range l.campaigns.list() {
		byIndex[c.index] = c
	}
	now := l.now()
	nowMin := stats.Minute(now)
	keyed, _ := l.dedup.(keyedDeduper)
	add := l.dedup.Add
	if x, ok := l.dedup.(*sketch.Exact); ok {
		// Gathers the pairs and builds each map once, at its size.
		ld := x.Loader()
		defer ld.Close()
		add = ld.Add
	}
	rs, err := dir.Replay(seg, func(r *store.Record) error {
		switch r.Kind {
		case store.KindCampaign:
			// An earlier version's: its pairs are keyed by the id alone.
			c := newLocalCampaign(Campaign{index: r.Campaign, ID: string(r.ID), Name: string(r.Name), Start: r.Start}, "")
			if old := byIndex[c.index]; old != nil {
				return fmt.Errorf("campaign index %d created twice (%q, %q)", c.index, old.ID, c.ID)
			}
			if err := l.campaigns.restore(c); err != nil {
				return err
			}
			byIndex[c.index] = c
		case store.KindDefine:
			def := Campaign{index: r.Campaign, ID: string(r.ID), Name: string(r.Name), Start: r.Start}
			if r.HasEnd {
				def.End = r.End
			}
			for _, cp := range r.Caps {
				fc := FrequencyCap{Max: cp.Max, Window: cp.Window}
				if !validCap(fc) {
					return fmt.Errorf("campaign index %d defined with an invalid frequency cap (max %d, window %s)", r.Campaign, cp.Max, cp.Window)
				}
				def.Caps = append(def.Caps, fc)
			}
			old := byIndex[r.Campaign]
			if old == nil {
				c := newLocalCampaign(def, string(r.KeyTail))
				if err := l.campaigns.restore(c); err != nil {
					return err
				}
				byIndex[c.index] = c
				break
			}
			// A change: the same campaign, counter and dedup key.
			if old.ID != def.ID || old.keyTail != string(r.KeyTail) {
				return fmt.Errorf("campaign index %d redefined as another campaign (%q, %q)", r.Campaign, old.ID, def.ID)
			}
			c, err := l.campaigns.replace(r.ID, func(old *Campaign) (*Campaign, error) {
				c := *old
				c.Name, c.Start, c.End, c.Caps = def.Name, def.Start, def.End, def.Caps
				return &c, nil
			}, nil)
			if err != nil {
				return err
			}
			byIndex[r.Campaign] = c
		case store.KindDelete:
			c := byIndex[r.Campaign]
			if c == nil {
				return fmt.Errorf("deletion of unknown campaign index %d", r.Campaign)
			}
			if _, err := l.campaigns.remove([]byte(c.ID), nil); err != nil {
				return err
			}
			c.gone.Store(true)
			delete(byIndex, r.Campaign)
		case store.KindDuplicate, store.KindSeen:
			c := byIndex[r.Campaign]
			if c == nil {
				return fmt.Errorf("duplicate of unknown campaign index %d", r.Campaign)
			}
			c.dups.Add(r.Minute, nowMin)
			if r.Kind == store.KindSeen && !st.unkeyed {
				c.reach.reach().AddBucket(r.Reach, minuteBucket(r.Minute), sketch.ReachBucketOf(r.Arrival))
				l.freq.Add(r.Reach, r.Arrival) // the pair's key, as apply adds it
			}
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
				add(c.key, r.User, r.Arrival)
			case keyed != nil && st.unkeyed:
				// Hashed without a secret (ResetDedup): the key means
				// nothing to this window; the record is only counted.
			case keyed != nil:
				keyed.AddKey(sketch.Key{Lo: r.KeyLo, Hi: r.KeyHi}, r.Arrival)
			default:
				return errors.New("record holds a pair's hash, not its user id: the log was written with -dedup bloom")
			}
			c.counter.Add(r.Minute, nowMin)
			c.hist.Add(r.Minute, nowMin)
			if len(r.AdID) > 0 {
				c.ads.add(r.AdID, r.Minute, nowMin, l.maxAds)
			}
			// Reach of a pair logged without a secret (an earlier
			// version's) would not match the same user's new keys.
			if !st.unkeyed {
				h := r.KeyLo
				if r.User != nil {
					h = l.hasher.Key(c.key, r.User).Lo
				}
				c.reach.reach().AddBucket(h, minuteBucket(r.Minute), sketch.ReachBucketOf(r.Arrival))
				l.freq.Add(h, r.Arrival)
			}
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
	st.Campaigns = int(l.campaigns.count.Load())
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

// loadSnapshot reads the sections after the meta section of r: the
// campaigns and the dedup window.
func (l *local) loadSnapshot(r *store.SnapshotReader, version byte, st *RestoreStats) error {
	err := r.Section(sectionCampaigns, func(rd io.Reader) error { return l.readCampaigns(rd, version) })
	if err != nil {
		return err
	}
	err = r.Section(sectionDedup, func(rd io.Reader) error {
		if st.unkeyed {
			_, err := io.Copy(io.Discard, rd) // the checksum is still checked
			return err
		}
		_, err := l.dedup.ReadFrom(rd)
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
	if version >= 4 {
		err = r.Section(sectionFrequency, func(rd io.Reader) error {
			if st.unkeyed {
				_, err := io.Copy(io.Discard, rd)
				return err
			}
			_, err := l.freq.ReadFrom(rd)
			if errors.Is(err, sketch.ErrLayoutMismatch) && st.resetDedup {
				if st.DedupReset == "" {
					st.DedupReset = err.Error()
				}
				_, err = io.Copy(io.Discard, rd)
				return err
			}
			if errors.Is(err, sketch.ErrLayoutMismatch) {
				return fmt.Errorf("%w; start with the -frequency-capacity and -dedup flags the data was written with, or once with -dedup-reset to keep the campaigns and counts with empty dedup and frequency windows, or move the data directory away", err)
			}
			return err
		})
		if err != nil {
			return err
		}
	}
	return r.End()
}

// snapshotIfChanged writes a snapshot when one is due: the state changed
// since the last snapshot (a record was appended after its cut, or records
// replayed at start-up are in none), and the log written since is at least
// as large as that snapshot, so that writing one costs no more than the
// log it replaces. An idle server writes nothing; a busy one writes about
// as many snapshot bytes as log bytes, and a start-up replays at most one
// snapshot's size of log on top of the interval's. It reports whether it
// wrote one.
func (l *local) snapshotIfChanged() (bool, error) {
	p := l.persist
	p.snapMu.Lock()
	defer p.snapMu.Unlock()
	ls := p.log.Stats()
	changed := ls.Records != p.snapRecords.Load() || p.unsnapped.Load()
	if !changed || int64(ls.Bytes)-p.snapLogBytes.Load() < p.snapSize.Load() {
		p.snapshotsSkipped.Add(1)
		return false, nil
	}
	return true, l.snapshotLocked(p)
}

func (l *local) snapshotLocked(p *persister) error {
	start := time.Now()
	err := l.snapshotTo(p)
	if err != nil {
		p.snapshotFailures.Add(1)
		return err
	}
	p.snapshotDuration.Store(int64(time.Since(start)))
	p.lastSnapshot.Store(time.Now().Unix())
	return nil
}

func (l *local) snapshotTo(p *persister) error {
	paused := time.Now()
	p.gate.Lock()
	seg, err := p.log.Rotate()
	if err != nil {
		p.gate.Unlock()
		return err
	}
	cut := p.log.Stats() // nothing is appended while the gate is held
	camps := l.appendCampaigns(nil)
	// The exposures are copied while nothing is appended, unlike the
	// dedup window: replay adds every logged exposure after the cut, so
	// one the copy also held would be counted twice.
	var freq bytes.Buffer
	_, ferr := l.freq.WriteTo(&freq)
	p.gate.Unlock()
	if ferr != nil {
		return ferr
	}
	p.snapshotPause.Store(int64(time.Since(paused)))

	w, err := p.dir.CreateSnapshot(seg)
	if err != nil {
		return err
	}
	defer w.Abort()
	err = w.Section(sectionMeta, func(wr io.Writer) error {
		_, err := wr.Write(snapshotMeta{taken: l.now(), secret: l.dedup.Hasher().Secret(), keyed: true, version: snapshotVersion}.append(nil))
		return err
	})
	if err == nil {
		err = w.Section(sectionCampaigns, func(wr io.Writer) error { _, err := wr.Write(camps); return err })
	}
	if err == nil {
		err = w.Section(sectionDedup, func(wr io.Writer) error { _, err := l.dedup.WriteTo(wr); return err })
	}
	if err == nil {
		err = w.Section(sectionFrequency, func(wr io.Writer) error { _, err := wr.Write(freq.Bytes()); return err })
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

// appendCampaigns encodes every campaign (version 3): count, then per
// campaign its index, id, name, start, end (a byte, 1 if it has one, then
// the end), dedup key tail, counter, duplicates' counter, history (hours
// and days) and reach (sketch.Reach's form, empty for none), each of the
// last four after its length (uint32); then its ads: their number, each
// ad's id and counter, then the other ids' counter.
// Version 1 has no end, no tail, no duplicates and no history; version 2
// no reach and no ads.
func (l *local) appendCampaigns(b []byte) []byte {
	all := l.campaigns.list()
	b = binary.AppendUvarint(b, uint64(len(all)))
	for _, c := range all {
		b = binary.AppendUvarint(b, uint64(c.index))
		b = appendString(b, c.ID)
		b = appendString(b, c.Name)
		b = binary.LittleEndian.AppendUint64(b, uint64(c.Start.UnixNano()))
		if c.End.IsZero() {
			b = append(b, 0)
		} else {
			b = append(b, 1)
			b = binary.LittleEndian.AppendUint64(b, uint64(c.End.UnixNano()))
		}
		b = appendString(b, c.keyTail)
		b = appendCounter(b, c.counter.encoded())
		b = appendCounter(b, c.dups.encoded())
		n := len(b)
		b = append(b, 0, 0, 0, 0)
		b, _ = c.hist.AppendBinary(b)
		binary.LittleEndian.PutUint32(b[n:], uint32(len(b)-n-4))
		n = len(b)
		b = append(b, 0, 0, 0, 0)
		if r := c.reach.p.Load(); r != nil {
			b, _ = r.AppendBinary(b) // fails only if the library cannot encode
		}
		binary.LittleEndian.PutUint32(b[n:], uint32(len(b)-n-4))
		b = c.ads.appendBinary(b)
		b = appendCaps(b, c.Caps)
	}
	return b
}

// appendCaps appends a campaign's frequency caps: their number, then each
// cap's max and window (nanoseconds), as uvarints.
func appendCaps(b []byte, caps []FrequencyCap) []byte {
	b = binary.AppendUvarint(b, uint64(len(caps)))
	for _, c := range caps {
		b = binary.AppendUvarint(b, c.Max)
		b = binary.AppendUvarint(b, uint64(c.Window))
	}
	return b
}

// readCaps reads appendCaps' encoding, checking each cap as Create does.
func readCaps(r io.ByteReader) ([]FrequencyCap, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil || n > MaxCaps {
		return nil, errCampaignsSection
	}
	if n == 0 {
		return nil, nil
	}
	caps := make([]FrequencyCap, n)
	for i := range caps {
		m, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, err
		}
		w, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, err
		}
		caps[i] = FrequencyCap{Max: m, Window: time.Duration(w)}
		if !validCap(caps[i]) {
			return nil, errCampaignsSection
		}
	}
	return caps, nil
}

// minuteBucket is the reach bucket of Unix minute m.
func minuteBucket(m int64) int64 { return sketch.ReachBucketOf(time.Unix(m*60, 0)) }

// appendBinary appends the ads' encoding: the rows' number, each row's id
// and counter, then other's counter.
func (t *adTable) appendBinary(b []byte) []byte {
	t.mu.RLock()
	defer t.mu.RUnlock()
	b = binary.AppendUvarint(b, uint64(len(t.rows)))
	for _, r := range t.rows {
		b = appendString(b, r.id)
		b = appendCounter(b, &r.n)
	}
	return appendCounter(b, t.other.encoded())
}

// appendCounter appends a counter's encoding after its length (uint32).
func appendCounter(b []byte, c *stats.Counter) []byte {
	n := len(b)
	b = append(b, 0, 0, 0, 0)
	b, _ = c.AppendBinary(b)
	binary.LittleEndian.PutUint32(b[n:], uint32(len(b)-n-4))
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errCampaignsSection = errors.New("malformed campaigns section")

// maxHistoryBytes bounds a campaign's history in a snapshot: a full ring
// of hours and daily counts from 1678 to 2262.
const maxHistoryBytes = 8 + stats.HistoryDays*(8+24*8) + (600*366/64+2)*(8+64*8)

// maxReachBytes bounds a campaign's reach in a snapshot: two sketches'
// headers and registers for each bucket of a day and the total.
const maxReachBytes = 64 + 2*(1<<14+256) + (24*12+1)*2*(1<<12+256)

// readCampaigns decodes appendCampaigns' encoding of the given version
// into the campaign table.
func (l *local) readCampaigns(rd io.Reader, version byte) error {
	r := bufio.NewReader(rd)
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return err
	}
	str := func() (string, error) {
		n, err := binary.ReadUvarint(r)
		if err != nil || n > 1<<16 {
			return "", errCampaignsSection
		}
		b := make([]byte, n)
		_, err = io.ReadFull(r, b)
		return string(b), err
	}
	var fixed [8]byte
	var counter []byte
	var spare *stats.Counter
	for range n {
		idx, err := binary.ReadUvarint(r)
		if err != nil || idx > 1<<32-1 {
			return errCampaignsSection
		}
		def := Campaign{index: uint32(idx)}
		if def.ID, err = str(); err != nil {
			return err
		}
		if def.Name, err = str(); err != nil {
			return err
		}
		if _, err := io.ReadFull(r, fixed[:]); err != nil {
			return err
		}
		def.Start = time.Unix(0, int64(binary.LittleEndian.Uint64(fixed[:]))).UTC()
		var tail string
		if version >= 2 {
			switch hasEnd, err := r.ReadByte(); {
			case err != nil:
				return err
			case hasEnd == 1:
				if _, err := io.ReadFull(r, fixed[:]); err != nil {
					return err
				}
				def.End = time.Unix(0, int64(binary.LittleEndian.Uint64(fixed[:]))).UTC()
			case hasEnd != 0:
				return errCampaignsSection
			}
			if tail, err = str(); err != nil {
				return err
			}
		}
		c := newLocalCampaign(def, tail)
		readCounter := func(into *stats.Counter) error {
			if _, err := io.ReadFull(r, fixed[:4]); err != nil {
				return err
			}
			size := binary.LittleEndian.Uint32(fixed[:4])
			if size > 16+8*stats.Minutes {
				return errCampaignsSection
			}
			counter = append(counter[:0], make([]byte, size)...)
			if _, err := io.ReadFull(r, counter); err != nil {
				return err
			}
			return into.UnmarshalBinary(counter)
		}
		// An empty counter stays unallocated (lazyCounter): it is read
		// into spare, which the next one reuses.
		readLazy := func(into *lazyCounter) error {
			if spare == nil {
				spare = new(stats.Counter)
			}
			if err := readCounter(spare); err != nil {
				return err
			}
			if spare.Total() > 0 {
				into.p.Store(spare)
				spare = nil
			}
			return nil
		}
		if err := readLazy(c.counter); err != nil {
			return err
		}
		if version >= 2 {
			if err := readLazy(c.dups); err != nil {
				return err
			}
			if _, err := io.ReadFull(r, fixed[:4]); err != nil {
				return err
			}
			size := binary.LittleEndian.Uint32(fixed[:4])
			if size > maxHistoryBytes {
				return errCampaignsSection
			}
			counter = append(counter[:0], make([]byte, size)...)
			if _, err := io.ReadFull(r, counter); err != nil {
				return err
			}
			if err := c.hist.UnmarshalBinary(counter); err != nil {
				return err
			}
		}
		if version >= 3 {
			if _, err := io.ReadFull(r, fixed[:4]); err != nil {
				return err
			}
			size := binary.LittleEndian.Uint32(fixed[:4])
			if size > maxReachBytes {
				return errCampaignsSection
			}
			counter = append(counter[:0], make([]byte, size)...)
			if _, err := io.ReadFull(r, counter); err != nil {
				return err
			}
			if size > 0 {
				reach := new(sketch.Reach)
				if err := reach.UnmarshalBinary(counter); err != nil {
					return err
				}
				c.reach.p.Store(reach)
			}
			ads, err := binary.ReadUvarint(r)
			if err != nil || ads > 1<<20 {
				return errCampaignsSection
			}
			for range ads {
				id, err := str()
				if err != nil {
					return err
				}
				if len(id) == 0 || c.ads.rows[id] != nil {
					return errCampaignsSection
				}
				row := &adRow{id: id}
				if err := readCounter(&row.n); err != nil {
					return err
				}
				if c.ads.rows == nil {
					c.ads.rows = make(map[string]*adRow, ads)
				}
				c.ads.rows[id] = row
			}
			if err := readLazy(&c.ads.other); err != nil {
				return err
			}
		}
		if version >= 4 {
			if c.Caps, err = readCaps(r); err != nil {
				return err
			}
		}
		if err := l.campaigns.restore(c); err != nil {
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
func (l *local) closeStore(snapshot bool) error {
	p := l.persist
	var errs []error
	if snapshot {
		// The log holds everything a failed snapshot would have: say so,
		// but the shutdown is clean (the next start replays the log).
		if _, err := l.snapshotIfChanged(); err != nil {
			l.log.Error("final snapshot failed; the log holds every acknowledged write and is replayed at the next start", "err", err)
		}
	}
	errs = append(errs, p.log.Close(), p.dir.Close())
	return errors.Join(errs...)
}

func (l *local) writeStoreMetrics(w io.Writer, help func(name, typ, text string)) {
	p := l.persist
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
