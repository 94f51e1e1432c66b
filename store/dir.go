package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

const (
	walPrefix  = "wal-"
	walSuffix  = ".log"
	snapPrefix = "snapshot-"
	snapSuffix = ".snap"
	tmpSuffix  = ".tmp"
	lockName   = "LOCK"
)

// ErrLocked is returned by OpenDir when another process holds the
// directory.
var ErrLocked = errors.New("store: data directory is in use by another process")

// Dir is an open data directory, locked against other processes. It is
// safe for concurrent use.
type Dir struct {
	path string
	lock *os.File
}

// OpenDir creates path if needed and takes its lock. Leftover temporary
// files of interrupted snapshots are removed.
func OpenDir(path string) (*Dir, error) {
	if err := os.MkdirAll(path, 0o755); err != nil {
		return nil, fmt.Errorf("store: cannot create data directory: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(path, lockName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("store: cannot open lock file: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, path)
		}
		return nil, fmt.Errorf("store: cannot lock %s: %w", path, err)
	}
	d := &Dir{path: path, lock: lock}
	names, err := d.names()
	if err != nil {
		d.Close()
		return nil, err
	}
	for _, n := range names {
		if strings.HasSuffix(n, tmpSuffix) {
			os.Remove(filepath.Join(path, n))
		}
	}
	return d, nil
}

// Path returns the directory's path.
func (d *Dir) Path() string { return d.path }

// Close releases the lock.
func (d *Dir) Close() error { return d.lock.Close() }

func (d *Dir) names() ([]string, error) {
	f, err := os.Open(d.path)
	if err != nil {
		return nil, fmt.Errorf("store: cannot read data directory: %w", err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("store: cannot read data directory: %w", err)
	}
	return names, nil
}

// numbered returns the sorted numbers of the files named prefix+N+suffix.
func (d *Dir) numbered(prefix, suffix string) ([]uint64, error) {
	names, err := d.names()
	if err != nil {
		return nil, err
	}
	var out []uint64
	for _, n := range names {
		if !strings.HasPrefix(n, prefix) || !strings.HasSuffix(n, suffix) {
			continue
		}
		v, err := strconv.ParseUint(n[len(prefix):len(n)-len(suffix)], 10, 64)
		if err != nil {
			continue // not ours
		}
		out = append(out, v)
	}
	slices.Sort(out)
	return out, nil
}

// Segments returns the numbers of the log segments, oldest first.
func (d *Dir) Segments() ([]uint64, error) { return d.numbered(walPrefix, walSuffix) }

// Snapshots returns the numbers of the snapshots, oldest first.
func (d *Dir) Snapshots() ([]uint64, error) { return d.numbered(snapPrefix, snapSuffix) }

func (d *Dir) segmentPath(n uint64) string {
	return filepath.Join(d.path, fmt.Sprintf("%s%016d%s", walPrefix, n, walSuffix))
}

func (d *Dir) snapshotPath(n uint64) string {
	return filepath.Join(d.path, fmt.Sprintf("%s%016d%s", snapPrefix, n, snapSuffix))
}

// RemoveBefore deletes the log segments before seg and the snapshots
// before seg: a snapshot for seg is in place and holds all they held.
func (d *Dir) RemoveBefore(seg uint64) error {
	segs, err := d.Segments()
	if err != nil {
		return err
	}
	snaps, err := d.Snapshots()
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range segs {
		if n < seg {
			errs = append(errs, os.Remove(d.segmentPath(n)))
		}
	}
	for _, n := range snaps {
		if n < seg {
			errs = append(errs, os.Remove(d.snapshotPath(n)))
		}
	}
	return errors.Join(errs...)
}

// syncDir makes the directory's entries (created, renamed files) durable.
func (d *Dir) syncDir() error {
	f, err := os.Open(d.path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// CorruptError reports data that failed a check on restore: the file, the
// byte offset where the bad record or section starts, and what was wrong.
type CorruptError struct {
	File   string
	Offset int64
	Err    error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("store: %s: corrupt at offset %d: %v", e.File, e.Offset, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// ErrVersion is wrapped by the CorruptError of a file written in another
// format version.
var ErrVersion = errors.New("unsupported format version")
