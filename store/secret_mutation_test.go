package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"syscall"
	"testing"
)

// TestWriteSyncedReportsWriteError: a write that fails is reported even
// though closing the file afterwards succeeds, so CreateSecret never
// renames a short secret file into place. /dev/full refuses every write
// with ENOSPC.
func TestWriteSyncedReportsWriteError(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full on this system")
	}
	err := writeSynced("/dev/full", make([]byte, secretLen))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("writeSynced to /dev/full = %v, want ENOSPC", err)
	}
}

// TestSecretFileFormat: the file CreateSecret writes is exactly the layout
// the secret.go comment specifies, and Secret refuses, as a *CorruptError
// naming the file, each way a file can differ from it: a byte too few or
// too many, another magic, a checksum that does not match, and (with a
// matching checksum) another version, which wraps ErrVersion.
func TestSecretFileFormat(t *testing.T) {
	d := openTestDir(t)
	secret := [16]byte{0xa0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0xaf}
	if err := d.CreateSecret(secret); err != nil {
		t.Fatal(err)
	}
	got := readFile(t, d.SecretPath())
	want := append([]byte("IMPKEY"), 1, 0) // version 1, little-endian
	want = append(want, secret[:]...)
	want = binary.LittleEndian.AppendUint32(want, crc32.Checksum(want, crcTable))
	if !bytes.Equal(got, want) {
		t.Fatalf("secret file\n% x\nwant\n% x", got, want)
	}
	// withCRC recomputes the checksum of a changed file.
	withCRC := func(b []byte) []byte {
		b = bytes.Clone(b)
		binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b[:len(b)-4], crcTable))
		return b
	}
	badMagic := bytes.Clone(want)
	badMagic[0] = 'X'
	badVersion := bytes.Clone(want)
	badVersion[6] = 2
	badCRC := bytes.Clone(want)
	badCRC[len(badCRC)-1] ^= 0x80
	for _, c := range []struct {
		name    string
		b       []byte
		version bool // the error wraps ErrVersion
	}{
		{"empty", nil, false},
		{"one byte short", want[:len(want)-1], false},
		// The checksum covers the extra byte: only the length is wrong.
		{"one byte long", withCRC(append(bytes.Clone(want), 0)), false},
		{"other magic", withCRC(badMagic), false},
		{"checksum mismatch", badCRC, false},
		{"version 2", withCRC(badVersion), true},
	} {
		writeFile(t, d.SecretPath(), c.b, 0o600)
		s, ok, err := d.Secret()
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.File != d.SecretPath() || ok || s != ([16]byte{}) {
			t.Fatalf("%s: Secret = %x, %v, %v; want a CorruptError naming the file", c.name, s, ok, err)
		}
		if errors.Is(err, ErrVersion) != c.version {
			t.Fatalf("%s: Secret error %v wraps ErrVersion: %v, want %v", c.name, err, !c.version, c.version)
		}
	}
	writeFile(t, d.SecretPath(), want, 0o600)
	if s, ok, err := d.Secret(); s != secret || !ok || err != nil {
		t.Fatalf("rewritten file: Secret = %x, %v, %v; want %x, true, nil", s, ok, err, secret)
	}
}
