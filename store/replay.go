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
// calls fn for each record in order. A torn write at the end of the newest
// segment — a record cut short, or damage (zeros, garbage) with no valid
// record after it — is cut: the segment is truncated before it and the cut
// is reported in ReplayStats.Torn, naming the file, the offset and the
// bytes dropped. Any other damage, and any error returned by fn, stops the
// replay with a *CorruptError naming the file and the record's offset.
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
				return d.damaged(path, off, last, errors.New("record length damaged"), st)
			}
			var m int
			m, err = io.ReadFull(r, payload[:size])
			n += m
			if err == nil {
				crc := crc32.Checksum(payload[:size], crcTable)
				if crc != binary.LittleEndian.Uint32(head[:4]) {
					return d.damaged(path, off, last, errors.New("record checksum mismatch"), st)
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
				return d.cutTorn(path, off, corrupt(off, fmt.Errorf("%w: %d bytes dropped at the end of the newest segment", errShort, n)), st)
			}
			return corrupt(off, errShort)
		}
		return corrupt(off, err)
	}
}

// damaged judges damage found at off. In the newest segment, damage with
// no valid record after it is a torn write — a power loss can leave zeros
// or stale blocks where the last records were being written — and is cut
// like a record cut short. Damage followed by a valid record is never a
// torn write: records after it were acknowledged, so it is refused.
func (d *Dir) damaged(path string, off int64, last bool, damage error, st *ReplayStats) error {
	corrupt := func(err error) *CorruptError { return &CorruptError{File: path, Offset: off, Err: err} }
	if !last {
		return corrupt(damage)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("store: cannot read %s: %w", path, err)
	}
	if int64(len(b)) < off {
		return corrupt(damage)
	}
	tail := b[off:]
	if at := nextRecord(tail); at >= 0 {
		return corrupt(fmt.Errorf("%w, and a valid record follows at offset %d", damage, off+int64(at)))
	}
	return d.cutTorn(path, off, corrupt(fmt.Errorf("%w: torn write, %d bytes dropped at the end of the newest segment", damage, len(tail))), st)
}

// nextRecord returns the offset of the first record in b after its first
// byte whose length and checksum check out, or -1. A record of random
// bytes passes both with a chance of 2⁻⁴⁸ per offset.
func nextRecord(b []byte) int {
	for i := 1; i+recordHeader <= len(b); i++ {
		h := b[i : i+recordHeader]
		size := int(binary.LittleEndian.Uint16(h[4:]))
		if ^uint16(size) != binary.LittleEndian.Uint16(h[6:]) || size == 0 || i+recordHeader+size > len(b) {
			continue
		}
		if crc32.Checksum(b[i+recordHeader:i+recordHeader+size], crcTable) == binary.LittleEndian.Uint32(h) {
			return i
		}
	}
	return -1
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
