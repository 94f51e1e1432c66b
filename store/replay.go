package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// ReplayStats describe one replay.
type ReplayStats struct {
	Segments int    // segments read
	Records  uint64 // records handed to the callback
	Bytes    int64  // bytes read
	// Torn, if not nil, is the torn write cut off the end of the newest
	// segment: the file and offset where it started, and what was short.
	Torn *CorruptError
}

var errShort = errors.New("record cut short")

// Replay reads every log segment numbered from or later, oldest first, and
// calls fn for each record in order. A record cut short at the end of the
// newest segment is a torn write: the segment is truncated before it and
// the cut is reported in ReplayStats.Torn. Any other damage, and any error
// returned by fn, stops the replay with a *CorruptError naming the file and
// the record's offset.
func (d *Dir) Replay(from uint64, fn func(*Record) error) (ReplayStats, error) {
	var st ReplayStats
	segs, err := d.Segments()
	if err != nil {
		return st, err
	}
	var live []uint64
	for _, n := range segs {
		if n >= from {
			live = append(live, n)
		}
	}
	for i, n := range live {
		last := i == len(live)-1
		if err := d.replaySegment(d.segmentPath(n), last, fn, &st); err != nil {
			return st, err
		}
		st.Segments++
	}
	return st, nil
}

func (d *Dir) replaySegment(path string, last bool, fn func(*Record) error, st *ReplayStats) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("store: cannot open %s: %w", path, err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	corrupt := func(off int64, err error) *CorruptError { return &CorruptError{File: path, Offset: off, Err: err} }

	var hdr [walHeader]byte
	if n, err := io.ReadFull(r, hdr[:]); err != nil {
		if last && (err == io.EOF || err == io.ErrUnexpectedEOF) {
			return d.cutTorn(path, 0, corrupt(int64(n), errors.New("segment header cut short")), st)
		}
		return corrupt(0, fmt.Errorf("cannot read segment header: %w", err))
	}
	if string(hdr[:len(walMagic)]) != walMagic {
		return corrupt(0, errors.New("not a log segment (bad magic)"))
	}
	if v := binary.LittleEndian.Uint16(hdr[len(walMagic):]); v != walVersion {
		return corrupt(0, fmt.Errorf("%w: log segment version %d, this build reads version %d", ErrVersion, v, walVersion))
	}
	off := int64(walHeader)
	var rec Record
	payload := make([]byte, maxPayload)
	var head [recordHeader]byte
	for {
		n, err := io.ReadFull(r, head[:])
		if err == io.EOF {
			st.Bytes += off
			return nil
		}
		if err == nil {
			size := int(binary.LittleEndian.Uint16(head[4:]))
			if ^uint16(size) != binary.LittleEndian.Uint16(head[6:]) {
				return corrupt(off, errors.New("record length damaged"))
			}
			var m int
			m, err = io.ReadFull(r, payload[:size])
			n += m
			if err == nil {
				crc := crc32.Checksum(payload[:size], crcTable)
				if crc != binary.LittleEndian.Uint32(head[:4]) {
					return corrupt(off, errors.New("record checksum mismatch"))
				}
				if err := rec.decode(payload[:size]); err != nil {
					return corrupt(off, err)
				}
				if err := fn(&rec); err != nil {
					return corrupt(off, err)
				}
				st.Records++
				off += int64(recordHeader + size)
				continue
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
		}
		if err == io.ErrUnexpectedEOF {
			if last {
				st.Bytes += off
				return d.cutTorn(path, off, corrupt(off, fmt.Errorf("%w: %d bytes of a record at the end of the newest segment", errShort, n)), st)
			}
			return corrupt(off, errShort)
		}
		return corrupt(off, err)
	}
}

// cutTorn truncates the newest segment before its torn record, so the next
// start-up does not meet it again.
func (d *Dir) cutTorn(path string, off int64, torn *CorruptError, st *ReplayStats) error {
	st.Torn = torn
	if off < int64(walHeader) {
		// Not even a header: the segment was being created.
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("store: cannot remove torn segment %s: %w", path, err)
		}
		return d.syncDir()
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("store: cannot truncate torn segment %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Truncate(off); err != nil {
		return fmt.Errorf("store: cannot truncate torn segment %s: %w", path, err)
	}
	return f.Sync()
}
