package tracker

import (
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/impressiond/impressiond/stats"
	"github.com/impressiond/impressiond/store"
)

// Unit tests of what restore accepts in a snapshot's meta and campaigns
// sections: the bounds readMeta and readCampaigns check, each exactly at
// the limit and one past it. A snapshot passes its checksum before these
// checks; they stand between a well-formed file of another writer (or a
// bug) and a state served from it.

// snapshotWith writes a directory whose snapshot holds the given meta and
// campaigns sections (nil: the ones a tracker wrote) and returns it.
func snapshotWith(t *testing.T, meta, campaigns []byte) string {
	t.Helper()
	dir := t.TempDir()
	clock := &fakeClock{t: suiteNow(t)}
	tr := openDir(t, "exact", dir, clock, nil)
	create(t, tr, "seed", clock.Now())
	if err := tr.Shutdown(); err != nil {
		t.Fatal(err)
	}
	d, err := store.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	seg, _, _ := d.LatestSnapshot()
	r, err := d.OpenSnapshot(seg)
	if err != nil {
		t.Fatal(err)
	}
	kinds := []byte{sectionMeta, sectionCampaigns, sectionDedup, sectionFrequency}
	var sections [4][]byte
	for i, kind := range kinds {
		err := r.Section(kind, func(rd io.Reader) (err error) { sections[i], err = io.ReadAll(rd); return err })
		if err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	if meta != nil && (len(meta) != 25 || meta[24] < 4) {
		kinds = kinds[:3] // versions before 4 have no frequency section
	}
	if meta != nil {
		sections[0] = meta
	}
	if campaigns != nil {
		sections[1] = campaigns
	}
	w, err := d.CreateSnapshot(seg)
	if err != nil {
		t.Fatal(err)
	}
	for i, kind := range kinds {
		if err := w.Section(kind, func(wr io.Writer) error { _, err := wr.Write(sections[i]); return err }); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// campaignEntry encodes one campaign as appendCampaigns does (version 4,
// no end, key tail "t", no duplicates, no reach, no ads, no caps), with a counter
// of counterSize bytes (0: an empty counter's encoding).
func campaignEntry(idx uint64, id string, counterSize int) []byte {
	return campaignEntryOf(snapshotVersion, idx, id, counterSize)
}

// campaignEntryOf encodes one campaign in the given version's encoding.
func campaignEntryOf(version byte, idx uint64, id string, counterSize int) []byte {
	b := binary.AppendUvarint(nil, idx)
	b = appendString(b, id)
	b = appendString(b, "Name "+id[:min(len(id), 8)])
	b = binary.LittleEndian.AppendUint64(b, uint64(time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC).UnixNano()))
	if version >= 2 {
		b = append(b, 0)
		b = appendString(b, "t")
	}
	var counter []byte
	if counterSize == 0 {
		var c stats.Counter
		counter, _ = c.AppendBinary(nil)
	} else {
		counter = make([]byte, counterSize)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(counter)))
	b = append(b, counter...)
	if version >= 2 {
		var dups stats.Counter
		d, _ := dups.AppendBinary(nil)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(d)))
		b = append(b, d...)
		var hist stats.History
		h, _ := hist.AppendBinary(nil)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(h)))
		b = append(b, h...)
	}
	if version >= 3 {
		b = binary.LittleEndian.AppendUint32(b, 0) // no reach
		b = append(b, 0)                           // no ads
		var other stats.Counter
		o, _ := other.AppendBinary(nil)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(o)))
		b = append(b, o...)
	}
	if version >= 4 {
		b = append(b, 0) // no frequency caps
	}
	return b
}

func campaignsSection(entries ...[]byte) []byte {
	b := binary.AppendUvarint(nil, uint64(len(entries)))
	for _, e := range entries {
		b = append(b, e...)
	}
	return b
}

// TestRestoreCampaignsSection: restore takes every well-formed campaign,
// at the largest index and the longest string it allows, and refuses each
// malformed section.
func TestRestoreCampaignsSection(t *testing.T) {
	clock := &fakeClock{t: suiteNow(t)}
	maxCounter := 16 + 8*stats.Minutes
	longID := strings.Repeat("x", 1<<16)
	for _, tc := range []struct {
		name    string
		section []byte
		want    string // in Open's error; empty: Open succeeds
	}{
		{"well-formed", campaignsSection(campaignEntry(0, "a", 0), campaignEntry(7, "b", 0)), ""},
		{"largest index", campaignsSection(campaignEntry(1<<32-1, "a", 0)), ""},
		{"index beyond uint32", campaignsSection(campaignEntry(1<<32, "a", 0)), "malformed campaigns section"},
		{"longest string", campaignsSection(campaignEntry(0, longID, 0)), ""},
		{"string too long", campaignsSection(campaignEntry(0, longID+"x", 0)), "malformed campaigns section"},
		{"largest counter size", campaignsSection(campaignEntry(0, "a", maxCounter)), "stats: counter state"},
		{"counter too large", campaignsSection(campaignEntry(0, "a", maxCounter+1)), "malformed campaigns section"},
		{"trailing byte", append(campaignsSection(campaignEntry(0, "a", 0)), 0), "malformed campaigns section"},
		{"one campaign short", campaignsSection(campaignEntry(0, "a", 0))[1:], "malformed campaigns section"},
		{"id twice", campaignsSection(campaignEntry(0, "a", 0), campaignEntry(1, "a", 0)), "restored twice"},
		{"truncated", campaignsSection(campaignEntry(0, "a", 0))[:5], "EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := snapshotWith(t, nil, tc.section)
			err := openDirErr(t, "exact", dir, clock, nil)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Open = %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Open = %v, want an error with %q", err, tc.want)
			}
		})
	}
	// What restore took is served, at its index: a new campaign after the
	// largest index restored gets the next one, and a restart keeps both.
	dir := snapshotWith(t, nil, campaignsSection(campaignEntry(0, "a", 0), campaignEntry(7, "b", 0)))
	tr := openDir(t, "exact", dir, clock, nil)
	b, err := tr.Campaign("b")
	if err != nil || b.Name != "Name b" || !b.Start.Equal(time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)) || b.Start.Location() != time.UTC {
		t.Fatalf("restored b as %+v, %v", b, err)
	}
	if st := tr.Restored(); st.Campaigns != 2 {
		t.Fatalf("restored %+v", st)
	}
	create(t, tr, "c", clock.Now())
	if got := tr.st.(*local).campaigns.get([]byte("c")).index; got != 8 {
		t.Fatalf("a campaign created after index 7 was restored got index %d, want 8", got)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	// A single campaign at index 0: the next one created gets 1.
	one := openDir(t, "exact", snapshotWith(t, nil, campaignsSection(campaignEntry(0, "a", 0))), clock, nil)
	create(t, one, "c", clock.Now())
	if got := one.st.(*local).campaigns.get([]byte("c")).index; got != 1 {
		t.Fatalf("a campaign created after index 0 was restored got index %d, want 1", got)
	}
	again := openDir(t, "exact", dir, clock, nil)
	if st := again.Restored(); st.Campaigns != 3 {
		t.Fatalf("restored %+v", st)
	}
}

// TestRestoreMetaSection: the meta section is the time, then the secret,
// then the campaigns section's version: 8 or 24 bytes (version 1) or 25,
// of a version this one reads.
func TestRestoreMetaSection(t *testing.T) {
	clock := &fakeClock{t: suiteNow(t)}
	taken := binary.LittleEndian.AppendUint64(nil, uint64(clock.Now().Add(-time.Hour).UnixNano()))
	keyed := append(append([]byte{}, taken...), make([]byte, 16)...)
	keyed[8] = 9
	v1 := campaignsSection(campaignEntryOf(1, 0, "seed", 0))
	for _, tc := range []struct {
		name      string
		meta      []byte
		campaigns []byte // nil: the tracker's own, of version 4
		want      string
	}{
		{"keyed", keyed, v1, ""},
		{"time only", taken, v1, ""},
		{"version 2", append(append([]byte{}, keyed...), 2), campaignsSection(campaignEntryOf(2, 0, "seed", 0)), ""},
		{"version 3", append(append([]byte{}, keyed...), 3), campaignsSection(campaignEntryOf(3, 0, "seed", 0)), ""},
		{"version 4", append(append([]byte{}, keyed...), 4), nil, ""},
		{"9 bytes", append(append([]byte{}, taken...), 1), nil, "meta section of 9 bytes"},
		{"version 0", append(append([]byte{}, keyed...), 0), nil, "version 0"},
		{"version 5", append(append([]byte{}, keyed...), 5), nil, "written by a newer version"},
		{"26 bytes", append(append([]byte{}, keyed...), 2, 0), nil, "meta section of 26 bytes"},
		{"empty", []byte{}, nil, "meta section of 0 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := snapshotWith(t, tc.meta, tc.campaigns)
			// The directory's own secret file would disagree with the
			// snapshot's: take it away, as when restoring a backup.
			removeSecret(t, dir)
			d := newDedup(t, "exact", 0)
			tr, err := Open(Options{Dedup: d, DataDir: dir, Now: clock.Now, Logger: quiet, SnapshotInterval: time.Hour})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Open = %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Open = %v, want an error with %q", err, tc.want)
			}
			if err != nil {
				return
			}
			defer tr.Close()
			if st := tr.Restored(); st.SnapshotAge != time.Hour {
				t.Fatalf("snapshot age %v, want the hour the meta section says", st.SnapshotAge)
			}
			if c, err := tr.Campaign("seed"); err != nil || c.ID != "seed" {
				t.Fatalf("campaign seed: %+v, %v", c, err)
			}
			if tc.name == "keyed" && (d.Hasher().Secret() != [16]byte(keyed[8:]) || tr.Restored().NewSecret) {
				t.Fatalf("secret %x, want the meta section's %x", d.Hasher().Secret(), keyed[8:])
			}
			if tc.name == "time only" && !tr.Restored().NewSecret {
				t.Fatal("an unkeyed exact snapshot without a secret file: no new secret")
			}
		})
	}
}

func removeSecret(t *testing.T, dir string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, "SECRET")); err != nil {
		t.Fatal(err)
	}
}
