package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
)

const (
	snapMagic   = "IMPSNAP\x00"
	snapVersion = 1
	// sectionEnd closes a complete snapshot.
	sectionEnd = 0xff
)

// SnapshotWriter writes one snapshot: a header, then sections, each framed
// as kind (1 byte), payload length (8 bytes), payload, and a CRC-32C of the
// payload followed by the kind and length. It is not safe for concurrent use.
type SnapshotWriter struct {
	d    *Dir
	seg  uint64
	tmp  string
	f    *os.File
	bw   *bufio.Writer
	off  int64
	done bool
}

// CreateSnapshot starts the snapshot holding the state before log segment
// seg, in a temporary file.
func (d *Dir) CreateSnapshot(seg uint64) (*SnapshotWriter, error) {
	tmp := d.snapshotPath(seg) + tmpSuffix
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("store: cannot create snapshot: %w", err)
	}
	w := &SnapshotWriter{d: d, seg: seg, tmp: tmp, f: f, bw: bufio.NewWriterSize(f, 1<<20)}
	w.bw.WriteString(snapMagic)
	w.bw.Write(binary.LittleEndian.AppendUint32(nil, snapVersion))
	w.off = int64(len(snapMagic) + 4)
	return w, nil
}

// Section writes one section whose payload write produces.
func (w *SnapshotWriter) Section(kind byte, write func(io.Writer) error) error {
	head := make([]byte, 9)
	head[0] = kind
	if _, err := w.bw.Write(head); err != nil {
		return w.fail(err)
	}
	crc := crc32.New(crcTable)
	cw := &countWriter{w: io.MultiWriter(w.bw, crc)}
	if err := write(cw); err != nil {
		return w.fail(err)
	}
	binary.LittleEndian.PutUint64(head[1:], uint64(cw.n))
	crc.Write(head)
	if err := w.bw.Flush(); err != nil {
		return w.fail(err)
	}
	if _, err := w.f.WriteAt(head[1:], w.off+1); err != nil {
		return w.fail(err)
	}
	if _, err := w.bw.Write(binary.LittleEndian.AppendUint32(nil, crc.Sum32())); err != nil {
		return w.fail(err)
	}
	w.off += int64(len(head)) + cw.n + 4
	return nil
}

// Commit closes the snapshot and puts it in place: fsync'd, renamed over
// its final name, directory fsync'd. A crash at any point leaves either no
// snapshot for seg or a complete one.
func (w *SnapshotWriter) Commit() error {
	if err := w.Section(sectionEnd, func(io.Writer) error { return nil }); err != nil {
		return err
	}
	if err := w.bw.Flush(); err != nil {
		return w.fail(err)
	}
	if err := w.f.Sync(); err != nil {
		return w.fail(err)
	}
	if err := w.f.Close(); err != nil {
		return w.fail(err)
	}
	w.done = true
	if err := os.Rename(w.tmp, w.d.snapshotPath(w.seg)); err != nil {
		os.Remove(w.tmp)
		return fmt.Errorf("store: cannot put snapshot in place: %w", err)
	}
	if err := w.d.syncDir(); err != nil {
		return fmt.Errorf("store: cannot fsync data directory: %w", err)
	}
	return nil
}

// Size returns the bytes written so far: the snapshot's size once
// committed.
func (w *SnapshotWriter) Size() int64 { return w.off }

// Abort drops an unfinished snapshot.
func (w *SnapshotWriter) Abort() {
	if !w.done {
		w.done = true
		w.f.Close()
		os.Remove(w.tmp)
	}
}

func (w *SnapshotWriter) fail(err error) error {
	w.Abort()
	return fmt.Errorf("store: cannot write snapshot: %w", err)
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// SnapshotReader reads a snapshot section by section. It is not safe for
// concurrent use.
type SnapshotReader struct {
	// Seg is the first log segment to replay after this snapshot.
	Seg  uint64
	path string
	f    *os.File
	br   *bufio.Reader
	off  int64
}

// LatestSnapshot returns the number of the newest snapshot, and false if
// there is none.
func (d *Dir) LatestSnapshot() (uint64, bool, error) {
	snaps, err := d.Snapshots()
	if err != nil || len(snaps) == 0 {
		return 0, false, err
	}
	return snaps[len(snaps)-1], true, nil
}

// OpenSnapshot opens the snapshot for seg and checks its header.
func (d *Dir) OpenSnapshot(seg uint64) (*SnapshotReader, error) {
	path := d.snapshotPath(seg)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("store: cannot open snapshot: %w", err)
	}
	r := &SnapshotReader{Seg: seg, path: path, f: f, br: bufio.NewReaderSize(f, 1<<20)}
	var hdr [len(snapMagic) + 4]byte
	if _, err := io.ReadFull(r.br, hdr[:]); err != nil {
		f.Close()
		return nil, r.corrupt(0, fmt.Errorf("cannot read header: %w", err))
	}
	if string(hdr[:len(snapMagic)]) != snapMagic {
		f.Close()
		return nil, r.corrupt(0, errors.New("not a snapshot (bad magic)"))
	}
	if v := binary.LittleEndian.Uint32(hdr[len(snapMagic):]); v != snapVersion {
		f.Close()
		return nil, r.corrupt(0, fmt.Errorf("%w: snapshot version %d, this build reads version %d", ErrVersion, v, snapVersion))
	}
	r.off = int64(len(hdr))
	return r, nil
}

// Path returns the snapshot's file name.
func (r *SnapshotReader) Path() string { return r.path }

// Close closes the file.
func (r *SnapshotReader) Close() error { return r.f.Close() }

func (r *SnapshotReader) corrupt(off int64, err error) error {
	return &CorruptError{File: r.path, Offset: off, Err: err}
}

// Section reads the next section, which must be of the given kind, and
// hands its payload to read. read may stop early only by returning an
// error. A checksum failure is a *CorruptError; it takes precedence over
// read's error, which is most likely its symptom.
func (r *SnapshotReader) Section(kind byte, read func(io.Reader) error) error {
	start := r.off
	head := make([]byte, 9)
	if _, err := io.ReadFull(r.br, head); err != nil {
		return r.corrupt(start, fmt.Errorf("cannot read section %d header: %w", kind, err))
	}
	if head[0] != kind {
		return r.corrupt(start, fmt.Errorf("section kind %d, want %d", head[0], kind))
	}
	size := binary.LittleEndian.Uint64(head[1:])
	crc := crc32.New(crcTable)
	lr := &io.LimitedReader{R: r.br, N: int64(min(size, 1<<62))}
	body := io.TeeReader(lr, crc)
	readErr := read(body)
	rest, err := io.Copy(io.Discard, body)
	if err != nil {
		return r.corrupt(start, fmt.Errorf("cannot read section %d: %w", kind, err))
	}
	if lr.N > 0 {
		return r.corrupt(start, fmt.Errorf("section %d cut short: %d of %d bytes missing", kind, lr.N, size))
	}
	if ok, err := r.checkCRC(crc, head); err != nil {
		return r.corrupt(start, err)
	} else if !ok {
		return r.corrupt(start, fmt.Errorf("section %d checksum mismatch", kind))
	}
	r.off = start + 9 + int64(size) + 4
	if readErr != nil {
		return fmt.Errorf("store: %s: section %d at offset %d: %w", r.path, kind, start, readErr)
	}
	if rest > 0 {
		return r.corrupt(start, fmt.Errorf("section %d has %d bytes its reader did not expect", kind, rest))
	}
	return nil
}

func (r *SnapshotReader) checkCRC(crc hash.Hash32, head []byte) (bool, error) {
	crc.Write(head)
	var sum [4]byte
	if _, err := io.ReadFull(r.br, sum[:]); err != nil {
		return false, fmt.Errorf("cannot read section checksum: %w", err)
	}
	return binary.LittleEndian.Uint32(sum[:]) == crc.Sum32(), nil
}

// End checks that the snapshot is complete: an end section and nothing
// after it.
func (r *SnapshotReader) End() error {
	if err := r.Section(sectionEnd, func(io.Reader) error { return nil }); err != nil {
		return err
	}
	if _, err := r.br.ReadByte(); err != io.EOF {
		return r.corrupt(r.off, errors.New("data after the end section"))
	}
	return nil
}
