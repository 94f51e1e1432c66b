//go:build linux

package store

import (
	"os"
	"syscall"
)

// fallocKeepSize reserves blocks without changing the file's size, so a
// reserved segment never shows a zero-filled tail to replay.
const fallocKeepSize = 0x1

// allocate reserves n bytes of f's blocks from off on. It fails with
// ENOSPC when the file system cannot give them, and with EOPNOTSUPP where
// it cannot reserve at all.
func allocate(f *os.File, off, n int64) error {
	for {
		err := syscall.Fallocate(int(f.Fd()), fallocKeepSize, off, n)
		if err != syscall.EINTR {
			return err
		}
	}
}
