package store

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
)

// TestSnapshotCorruptOffsets: a CorruptError names the offset of the
// section that failed, and of the data after the end section; Size is the
// committed file's size.
func TestSnapshotCorruptOffsets(t *testing.T) {
	d := openTestDir(t)
	w, err := d.CreateSnapshot(1)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range snapPayloads {
		if err := w.Section(byte(i+1), func(w io.Writer) error { _, err := w.Write(p); return err }); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	path := d.snapshotPath(1)
	full := readFile(t, path)
	if w.Size() != int64(len(full)) {
		t.Fatalf("Size() = %d, want the file's %d bytes", w.Size(), len(full))
	}
	// Section i starts after the header and the sections before it.
	starts := []int64{int64(len(snapMagic) + 4)}
	for _, p := range snapPayloads {
		starts = append(starts, starts[len(starts)-1]+9+int64(len(p))+4)
	}
	for i := range snapPayloads {
		bad := bytes.Clone(full)
		bad[starts[i]+9+int64(len(snapPayloads[i]))] ^= 1 // the section's checksum
		writeFile(t, path, bad, 0o644)
		_, err := readSnapshot(d, 1, snapPayloads...)
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.Offset != starts[i] {
			t.Fatalf("section %d damaged: %v, want a CorruptError at offset %d", i+1, err, starts[i])
		}
	}
	writeFile(t, path, append(bytes.Clone(full), 0), 0o644)
	_, err = readSnapshot(d, 1, snapPayloads...)
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Offset != int64(len(full)) {
		t.Fatalf("trailing byte: %v, want a CorruptError at offset %d", err, len(full))
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}
