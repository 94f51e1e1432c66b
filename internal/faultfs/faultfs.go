// Package faultfs is a file system for tests of code that writes files:
// a capacity that reserved blocks and written bytes take, and faults (I/O
// errors on writes, fsyncs and truncations) set while the test runs. It
// implements the optional interfaces store.Log uses (Allocate, Truncate,
// Seek). It is for tests only and imports nothing of the project.
package faultfs

import (
	"os"
	"sync"
	"syscall"
)

// Disk is a small file system: it has Capacity bytes, which reserved
// blocks and written bytes past them take, and can be told to fail writes,
// fsyncs or truncations with an I/O error. It tracks, per file, how far
// the content is fsync'd. Change its fields with Set while files are open.
type Disk struct {
	mu       sync.Mutex
	Capacity int64
	Used     int64 // bytes of blocks taken
	Written  int64 // bytes written, in all
	WriteErr int   // this many next writes fail with EIO
	SyncErr  int   // this many next fsyncs fail with EIO
	FailCut  bool  // truncations fail with EIO
	Partial  int   // the next failing write still writes this many bytes
	Files    []*File
	Synced   chan struct{} // receives after every successful fsync
	IOErrs   chan struct{} // receives after every write failed with EIO
}

// NewDisk returns a disk of capacity bytes.
func NewDisk(capacity int64) *Disk {
	return &Disk{Capacity: capacity, Synced: make(chan struct{}, 1<<10), IOErrs: make(chan struct{}, 1<<10)}
}

// Set changes the disk (its capacity or faults) under its lock.
func (d *Disk) Set(f func(d *Disk)) {
	d.mu.Lock()
	f(d)
	d.mu.Unlock()
}

// Open creates the file at path, or fails with ENOSPC when the disk is
// full.
func (d *Disk) Open(path string) (*File, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.Used >= d.Capacity {
		return nil, syscall.ENOSPC
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	df := &File{f: f, d: d}
	d.Files = append(d.Files, df)
	return df, nil
}

// Durable returns the bytes of every file's content that are fsync'd.
func (d *Disk) Durable() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var n int64
	for _, f := range d.Files {
		n += f.synced
	}
	return n
}

// File is a file on a Disk.
type File struct {
	f      *os.File
	d      *Disk
	size   int64 // bytes written
	blocks int64 // bytes of blocks taken: max(size, reserved end)
	synced int64
}

// take gives the file blocks up to end, from the disk's Capacity.
func (f *File) take(end int64) error {
	if end <= f.blocks {
		return nil
	}
	if f.d.Used+end-f.blocks > f.d.Capacity {
		return syscall.ENOSPC
	}
	f.d.Used += end - f.blocks
	f.blocks = end
	return nil
}

func (f *File) Write(p []byte) (int, error) {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	if f.d.WriteErr > 0 {
		f.d.WriteErr--
		select {
		case f.d.IOErrs <- struct{}{}:
		default:
		}
		n := min(f.d.Partial, len(p))
		f.d.Partial = 0
		if n > 0 {
			m, _ := f.f.Write(p[:n])
			f.size += int64(m)
			f.d.Written += int64(m)
			f.take(f.size)
			return m, syscall.EIO
		}
		return 0, syscall.EIO
	}
	// Like a real file system, write what fits, then fail.
	n := len(p)
	if f.take(f.size+int64(n)) != nil {
		n = int(max(0, min(int64(n), f.blocks-f.size+f.d.Capacity-f.d.Used)))
		f.take(f.size + int64(n))
	}
	m, err := f.f.Write(p[:n])
	f.size += int64(m)
	f.d.Written += int64(m)
	if err == nil && m < len(p) {
		err = syscall.ENOSPC
	}
	return m, err
}

func (f *File) Sync() error {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	if f.d.SyncErr > 0 {
		f.d.SyncErr--
		return syscall.EIO
	}
	if err := f.f.Sync(); err != nil {
		return err
	}
	f.synced = f.size
	select {
	case f.d.Synced <- struct{}{}:
	default:
	}
	return nil
}

func (f *File) Allocate(off, n int64) error {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	return f.take(off + n)
}

func (f *File) Truncate(size int64) error {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	if f.d.FailCut {
		return syscall.EIO
	}
	if err := f.f.Truncate(size); err != nil {
		return err
	}
	f.size = min(f.size, size)
	f.synced = min(f.synced, size)
	if size < f.blocks {
		f.d.Used -= f.blocks - size
		f.blocks = size
	}
	return nil
}

func (f *File) Seek(off int64, whence int) (int64, error) { return f.f.Seek(off, whence) }

func (f *File) Close() error { return f.f.Close() }

// Blocks returns the bytes of blocks the file holds: what it wrote or
// reserved, whichever ends later.
func (f *File) Blocks() int64 {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	return f.blocks
}

// Size returns the bytes written to the file.
func (f *File) Size() int64 {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	return f.size
}
