package tracker

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestStorageErrorsHidePaths: the 503 of a failing data directory names the
// kind of failure, never the directory's path or file names.
func TestStorageErrorsHidePaths(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		// The disk is full: the errno's words.
		{fmt.Errorf("store: cannot write log segment 3: %w", &os.PathError{Op: "write", Path: "/srv/secret/wal-3.log", Err: syscall.ENOSPC}), "no space left on device"},
		// Failing hardware.
		{fmt.Errorf("store: fsync: %w", &os.PathError{Op: "sync", Path: "/srv/secret/wal-3.log", Err: syscall.EIO}), "input/output error"},
		// No errno: a generic reason.
		{fmt.Errorf("store: log segment /srv/secret/wal-3.log is closed"), "the data directory cannot be written"},
	} {
		for _, e := range []*Error{errStorage(c.err), errNotDurable(c.err)} {
			if strings.Contains(string(e.Msg), "/srv/secret") || strings.Contains(string(e.Msg), "wal-3") {
				t.Errorf("message %s leaks a path", e.Msg)
			}
			if !strings.Contains(string(e.Msg), c.want) {
				t.Errorf("message %s does not say %q", e.Msg, c.want)
			}
		}
	}
}
