package tracker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/impressiond/impressiond/store"
)

// The secret of a durable server: the dedup window's Hasher is keyed with a
// 16-byte secret that the data directory keeps twice, in its secret file
// (written before the first log record, so the log's hashed keys always
// find it) and in every snapshot's meta section (a snapshot is the unit of
// backup: restored into an empty directory it brings its secret back). The
// two must agree.

// snapshotMeta is the meta section of a snapshot: the time it was taken
// (int64 Unix nanoseconds, little-endian), the secret, then the version of
// the campaigns section's encoding (one byte, 2). Snapshots of earlier
// versions hold the time only (keyed is false for them), or the time and
// the secret; their campaigns sections are of version 1.
type snapshotMeta struct {
	taken   time.Time
	secret  [16]byte
	keyed   bool
	version byte
}

// snapshotVersion is the campaigns section encoding this version writes:
// 2 adds each campaign's end and dedup key tail, 3 its reach and its
// counts by ad id, 4 its frequency caps and a frequency section after the
// dedup window.
const snapshotVersion = 4

func (m snapshotMeta) append(b []byte) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(m.taken.UnixNano()))
	b = append(b, m.secret[:]...)
	return append(b, m.version)
}

func readMeta(r *store.SnapshotReader) (m snapshotMeta, err error) {
	err = r.Section(sectionMeta, func(rd io.Reader) error {
		b, err := io.ReadAll(io.LimitReader(rd, 64))
		switch {
		case err != nil:
			return err
		case len(b) != 8 && len(b) != 8+16 && len(b) != 8+16+1:
			return fmt.Errorf("meta section of %d bytes, want 8, 24 or 25", len(b))
		}
		m.taken = time.Unix(0, int64(binary.LittleEndian.Uint64(b)))
		m.keyed = copy(m.secret[:], b[8:]) == 16
		m.version = 1
		if len(b) == 25 {
			m.version = b[24]
		}
		if m.version < 1 || m.version > snapshotVersion {
			return fmt.Errorf("campaigns encoded in version %d, which this version cannot read: it was written by a newer version", m.version)
		}
		return nil
	})
	return m, err
}

// ErrUnkeyedData is wrapped by New's error for a data directory written by
// a version that hashed pairs without a secret, in Bloom mode: its keys
// cannot be re-hashed, since the ids are not kept.
var ErrUnkeyedData = errors.New("tracker: the data directory's Bloom dedup state was hashed without a secret")

// adoptSecret decides the data directory's secret and keys the window with
// it, before anything is loaded into the window:
//
//   - the snapshot's, if it has one, which the secret file, if present,
//     must equal;
//   - else the secret file's;
//   - else a new one, the window's own, if nothing was hashed before:
//     no snapshot, or in exact mode, whose snapshots and log hold the
//     pairs themselves.
//
// A Bloom snapshot without a secret, or Bloom log segments without a
// secret file, were written by an earlier version with unkeyed murmur3
// keys: refused, with ErrUnkeyedData.
func (l *local) adoptSecret(dir *store.Dir, snap *store.SnapshotReader, meta snapshotMeta, st *RestoreStats) error {
	file, haveFile, err := dir.Secret()
	if err != nil {
		return err
	}
	bloom := l.keyed != nil
	var secret [16]byte
	switch {
	case meta.keyed && haveFile && file != meta.secret:
		return fmt.Errorf("tracker: the secret file %s and the snapshot %s hold different secrets: they belong to different data directories; put back the secret file that came with the snapshot, or remove the secret file to take the snapshot's", dir.SecretPath(), snap.Path())
	case meta.keyed:
		secret = meta.secret
	case bloom && snap != nil && st.resetDedup:
		st.unkeyed, st.DedupReset = true, fmt.Sprintf("snapshot %s holds no secret (an earlier version's)", snap.Path())
		secret, st.NewSecret = l.dedup.Hasher().Secret(), true
	case bloom && snap != nil:
		return fmt.Errorf("%w (snapshot %s holds no secret): it was written by an earlier version; start once with -dedup-reset to keep its campaigns and counts with an empty dedup window, see docs/DURABILITY.md, \"Upgrading\"", ErrUnkeyedData, snap.Path())
	case haveFile:
		secret = file
	default:
		segs, err := dir.Segments()
		if err != nil {
			return err
		}
		if bloom && len(segs) > 0 && !st.resetDedup {
			return fmt.Errorf("%w (log segments but no secret file %s): it was written by an earlier version; start once with -dedup-reset to keep its campaigns and counts with an empty dedup window, see docs/DURABILITY.md, \"Upgrading\"", ErrUnkeyedData, dir.SecretPath())
		}
		if bloom && len(segs) > 0 {
			st.unkeyed, st.DedupReset = true, fmt.Sprintf("log segments but no secret file %s (an earlier version's)", dir.SecretPath())
		}
		secret = l.dedup.Hasher().Secret()
		st.NewSecret = true
	}
	st.secretStored = haveFile
	if err := l.dedup.SetSecret(secret); err != nil {
		return fmt.Errorf("tracker: Options.Dedup must be a new window: %w", err)
	}
	l.hasher = l.dedup.Hasher()
	return nil
}
