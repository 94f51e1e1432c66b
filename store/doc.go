// Package store keeps impressiond's state on disk: a write-ahead log of
// every counted impression and created campaign, and periodic snapshots of
// the whole state, in one data directory.
//
// # Guarantees
//
// The log is written by one goroutine (Log) fed through a channel. Appends
// are group-committed: whatever arrived while the previous write and fsync
// ran is written with one write(2) and made durable with one fsync.
//
//   - A record handed to Log.Append has been written to the operating system
//     (it survives the process being killed) within one group commit, which
//     is microseconds under load.
//   - With Options.FsyncInterval > 0 it is fsync'd (it survives power loss)
//     within FsyncInterval; with 0, Append returns only once it is fsync'd.
//   - Records Append'ed with sync set (campaign creations) are always
//     fsync'd before Append returns.
//
// Every log record carries a CRC-32C of its bytes. On replay, a torn write
// at the very end of the newest segment — a record cut short, or zeros or
// garbage after the last valid record, with no valid record after them —
// is dropped, the segment is truncated before it, and the caller is told
// the file, offset and bytes dropped. Anything else that does not check
// out — damage followed by a valid record, an unknown record, a short
// record in an older segment, a wrong format version — is returned as a
// *CorruptError naming the file and offset, and must stop the start-up:
// serving silently wrong counts is worse than not serving.
//
// The log reserves disk space ahead of its writes (Log.Reserve), so a full
// disk refuses new records instead of failing the write of records already
// accepted.
//
// A snapshot is written to a temporary file, fsync'd, renamed into place and
// the directory fsync'd, so a crash leaves either the old snapshot or the new
// one, never half of one. Each section carries its own CRC-32C, the file a
// format version. A snapshot named for log segment N holds the state of
// every record in segments before N; once it is in place those segments are
// deleted.
//
// # Layout
//
//	LOCK                          flock'd by the one process using the directory
//	SECRET                        the 16-byte secret hashed records are keyed with;
//	                              created once (temp, fsync, rename, directory fsync)
//	wal-0000000000000007.log      log segments, replayed in order
//	snapshot-0000000000000007.snap  state before segment 7
//
// See docs/DURABILITY.md for the byte layout of each file.
//
// It owns the bytes on disk: it moves records and sections and knows
// neither what a campaign or a dedup window is nor HTTP; it imports the
// standard library only and must not import the other packages of this
// module (tracker decides what goes in the records and snapshots).
package store
