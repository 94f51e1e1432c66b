//go:build !linux

package store

import (
	"errors"
	"os"
)

// allocate cannot reserve blocks on this platform: the log runs without
// reserved space (Log.Reserving reports false).
func allocate(f *os.File, off, n int64) error {
	return errors.ErrUnsupported
}
