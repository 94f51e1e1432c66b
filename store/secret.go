package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
)

// The secret file holds the 16-byte secret the directory's hashed records
// and snapshots are keyed with:
//
//	magic "IMPKEY" | version uint16 | secret [16]byte | CRC-32C of the above, uint32
const (
	secretName    = "SECRET"
	secretMagic   = "IMPKEY"
	secretVersion = 1
	secretLen     = len(secretMagic) + 2 + 16 + 4
)

// SecretPath returns the path of the directory's secret file.
func (d *Dir) SecretPath() string { return filepath.Join(d.path, secretName) }

// Secret returns the secret stored in the directory, and false if it has
// none. A file that does not check out is a *CorruptError.
func (d *Dir) Secret() (secret [16]byte, ok bool, err error) {
	path := d.SecretPath()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return secret, false, nil
	}
	if err != nil {
		return secret, false, fmt.Errorf("store: cannot read secret file: %w", err)
	}
	bad := func(err error) ([16]byte, bool, error) {
		return [16]byte{}, false, &CorruptError{File: path, Err: err}
	}
	switch {
	case len(b) != secretLen || string(b[:len(secretMagic)]) != secretMagic:
		return bad(fmt.Errorf("not a secret file (%d bytes)", len(b)))
	case crc32.Checksum(b[:secretLen-4], crcTable) != binary.LittleEndian.Uint32(b[secretLen-4:]):
		return bad(errors.New("secret file checksum mismatch"))
	}
	if v := binary.LittleEndian.Uint16(b[len(secretMagic):]); v != secretVersion {
		return bad(fmt.Errorf("%w: secret file version %d, this build reads version %d", ErrVersion, v, secretVersion))
	}
	copy(secret[:], b[len(secretMagic)+2:])
	return secret, true, nil
}

// CreateSecret stores secret in the directory, durably before it returns:
// written to a temporary file, fsync'd, renamed into place, the directory
// fsync'd. A crash leaves either no secret file or a complete one. It
// refuses to replace an existing secret, which the directory's data
// depends on.
func (d *Dir) CreateSecret(secret [16]byte) error {
	path := d.SecretPath()
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("store: %s already exists", path)
	}
	b := append([]byte(secretMagic), 0, 0)
	binary.LittleEndian.PutUint16(b[len(secretMagic):], secretVersion)
	b = append(b, secret[:]...)
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
	tmp := path + tmpSuffix
	err := writeSynced(tmp, b)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("store: cannot create secret file: %w", err)
	}
	if err := d.syncDir(); err != nil {
		return fmt.Errorf("store: cannot fsync data directory: %w", err)
	}
	return nil
}

func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
