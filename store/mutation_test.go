package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"strings"
	"testing"
	"time"
)

// writeSegment appends b to a new log in a fresh directory and returns the
// bytes of the segment it wrote, and the directory.
func writeSegment(t *testing.T, b *Batch) ([]byte, *Dir) {
	t.Helper()
	d := openTestDir(t)
	l, err := OpenLog(d, 1, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(b); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return readFile(t, d.segmentPath(1)), d
}

// docRecord frames a payload as docs/DURABILITY.md describes a log record:
// crc32c of the payload, its length, the length's complement, the payload.
func docRecord(payload []byte) []byte {
	r := binary.LittleEndian.AppendUint32(nil, crc32.Checksum(payload, crc32.MakeTable(crc32.Castagnoli)))
	r = binary.LittleEndian.AppendUint16(r, uint16(len(payload)))
	r = binary.LittleEndian.AppendUint16(r, ^uint16(len(payload)))
	return append(r, payload...)
}

// TestLogSegmentFormat checks the bytes of a segment against the format in
// docs/DURABILITY.md, for arrival times on both sides of the Unix epoch and
// on minute boundaries, where the stored minute difference is easiest to get
// wrong. A Bloom-mode impression record is 36 bytes.
func TestLogSegmentFormat(t *testing.T) {
	for _, arrival := range []time.Time{
		t0,
		time.Unix(0, 0),
		time.Unix(0, -1),             // the last nanosecond of minute -1
		time.Unix(-60, 0),            // the first nanosecond of minute -1
		time.Unix(-61, 999999999),    // minute -2
		time.Unix(59, 999999999),     // the last nanosecond of minute 0
		time.Unix(-3600, -500000000), // a fraction before a negative whole second
	} {
		t.Run(arrival.UTC().Format(time.RFC3339Nano), func(t *testing.T) {
			arrivalMinute := arrival.Truncate(time.Minute).Unix() / 60 // floors on both sides of the epoch
			var b Batch
			b.AddImpression(3, arrival, arrivalMinute-2, 0x1122334455667788, 0x99aabbccddeeff00, nil, nil)
			b.AddImpression(3, arrival, arrivalMinute, 0, 0, []byte("u-1"), nil)
			got, d := writeSegment(t, &b)

			want := []byte("IMPWAL\x01\x00")
			bloom := []byte{2, 3}
			bloom = binary.LittleEndian.AppendUint64(bloom, uint64(arrival.UnixNano()))
			bloom = append(bloom, 2, 0) // arrival minute − event minute, then bloom
			bloom = binary.LittleEndian.AppendUint64(bloom, 0x1122334455667788)
			bloom = binary.LittleEndian.AppendUint64(bloom, 0x99aabbccddeeff00)
			want = append(want, docRecord(bloom)...)
			if n := len(docRecord(bloom)); n != 36 {
				t.Fatalf("a Bloom-mode record is %d bytes, want 36", n)
			}
			exact := []byte{2, 3}
			exact = binary.LittleEndian.AppendUint64(exact, uint64(arrival.UnixNano()))
			exact = append(exact, 0, 1, 3, 'u', '-', '1') // same minute, exact, user
			want = append(want, docRecord(exact)...)
			if !bytes.Equal(got, want) {
				t.Fatalf("segment:\n got %x\nwant %x", got, want)
			}

			recs, _, err := collect(t, d)
			if err != nil {
				t.Fatal(err)
			}
			sameRecords(t, recs, []Record{
				{Kind: KindImpression, Campaign: 3, Arrival: arrival, Minute: arrivalMinute - 2, KeyLo: 0x1122334455667788, KeyHi: 0x99aabbccddeeff00},
				{Kind: KindImpression, Campaign: 3, Arrival: arrival, Minute: arrivalMinute, User: []byte("u-1")},
			})
		})
	}
}

// TestRecordAtMaxPayload: a record whose payload is exactly the largest a
// header can state is written and replayed; one byte more is a bug the
// batch refuses to frame.
func TestRecordAtMaxPayload(t *testing.T) {
	// kind, campaign, arrival, minute difference, exact marker, a 3-byte
	// uvarint length: 15 bytes before the user id.
	user := []byte(strings.Repeat("u", maxPayload-15))
	var b Batch
	b.AddImpression(0, t0, unixMinute(t0.UnixNano()), 0, 0, user, nil)
	got, d := writeSegment(t, &b)
	if want := walHeader + recordHeader + maxPayload; len(got) != want {
		t.Fatalf("segment of %d bytes, want %d", len(got), want)
	}
	recs, _, err := collect(t, d)
	if err != nil {
		t.Fatal(err)
	}
	sameRecords(t, recs, []Record{{Kind: KindImpression, Arrival: t0, Minute: unixMinute(t0.UnixNano()), User: user}})

	defer func() {
		if r := recover(); r == nil || !strings.HasPrefix(r.(string), "BUG: ") {
			t.Fatalf("framing %d payload bytes: recovered %v, want a BUG panic", maxPayload+1, r)
		}
	}()
	var big Batch
	big.AddImpression(0, t0, unixMinute(t0.UnixNano()), 0, 0, append(user, 'u'), nil)
}

// TestReplayUnknownKind: a sound record of a kind this build does not know
// stops the replay with an error naming the kind, even when the record is
// nothing but its kind byte.
func TestReplayUnknownKind(t *testing.T) {
	for _, payload := range [][]byte{{9}, {9, 0}, {0}} {
		d := openTestDir(t)
		seg := append([]byte("IMPWAL\x01\x00"), docRecord(payload)...)
		writeFile(t, d.segmentPath(1), seg, 0o644)
		_, _, err := collect(t, d)
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.Offset != int64(walHeader) {
			t.Fatalf("payload %x: got %v, want a *CorruptError at offset %d", payload, err, walHeader)
		}
		if want := fmt.Sprintf("unknown record kind %d", payload[0]); !strings.Contains(err.Error(), want) {
			t.Errorf("payload %x: got %q, want it to say %q", payload, err, want)
		}
	}
}

// TestReplayPayloadEdges: records whose checksum and length are sound but
// whose payload is not what the documented format allows are damage, and
// the largest campaign index is not.
func TestReplayPayloadEdges(t *testing.T) {
	arrival := binary.LittleEndian.AppendUint64(nil, uint64(t0.UnixNano()))
	impression := func(campaign []byte, tail ...byte) []byte {
		p := append([]byte{2}, campaign...)
		p = append(p, arrival...)
		return append(append(p, 0), tail...) // minute difference 0, then tail
	}
	maxIndex := binary.AppendUvarint(nil, 1<<32-1)
	overIndex := binary.AppendUvarint(nil, 1<<32)
	for _, tc := range []struct {
		name    string
		payload []byte
		ok      bool
	}{
		{"exact, user of 2 bytes", impression([]byte{5}, 1, 2, 'a', 'b'), true},
		{"exact, user length missing", impression([]byte{5}, 1), false},
		{"exact, a byte after the user", impression([]byte{5}, 1, 2, 'a', 'b', 0), false},
		{"bloom, a byte after the key", impression([]byte{5}, append(make([]byte, 17), 0)...), false},
		{"bloom, the key cut short", impression([]byte{5}, make([]byte, 16)...), false},
		{"campaign index 2^32-1", impression(maxIndex, 1, 0), true},
		{"campaign index 2^32", impression(overIndex, 1, 0), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := openTestDir(t)
			writeFile(t, d.segmentPath(1), append([]byte("IMPWAL\x01\x00"), docRecord(tc.payload)...), 0o644)
			recs, _, err := collect(t, d)
			if tc.ok {
				if err != nil || len(recs) != 1 {
					t.Fatalf("got %d records, %v; want 1, nil", len(recs), err)
				}
				return
			}
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.Offset != int64(walHeader) {
				t.Fatalf("got %d records, %v; want a *CorruptError at offset %d", len(recs), err, walHeader)
			}
		})
	}
}

// TestLargestCampaignIndex: the largest index a campaign can have is
// written and replayed.
func TestLargestCampaignIndex(t *testing.T) {
	var b Batch
	b.AddCampaign(1<<32-1, "c", "n", t0)
	b.AddImpression(1<<32-1, t0, unixMinute(t0.UnixNano()), 1, 2, nil, nil)
	_, d := writeSegment(t, &b)
	recs, _, err := collect(t, d)
	if err != nil {
		t.Fatal(err)
	}
	sameRecords(t, recs, []Record{
		{Kind: KindCampaign, Campaign: 1<<32 - 1, ID: []byte("c"), Name: []byte("n"), Start: t0},
		{Kind: KindImpression, Campaign: 1<<32 - 1, Arrival: t0, Minute: unixMinute(t0.UnixNano()), KeyLo: 1, KeyHi: 2},
	})
}

// TestReplayFrom: Replay(from) reads segment from and every later one, and
// none before it.
func TestReplayFrom(t *testing.T) {
	d := openTestDir(t)
	l, err := OpenLog(d, 1, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // segments 1, 2 and 3, one campaign record each
		var b Batch
		b.AddCampaign(uint32(i+1), fmt.Sprint("c", i+1), "", t0)
		if err := l.Append(&b); err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			if _, err := l.Rotate(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		from uint64
		want []uint32 // campaign indexes replayed, in order
	}{
		{0, []uint32{1, 2, 3}},
		{1, []uint32{1, 2, 3}},
		{2, []uint32{2, 3}},
		{3, []uint32{3}},
		{4, nil},
	} {
		var got []uint32
		st, err := d.Replay(tc.from, func(r *Record) error {
			got = append(got, r.Campaign)
			return nil
		})
		if err != nil {
			t.Fatalf("Replay(%d): %v", tc.from, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) || st.Segments != len(tc.want) {
			t.Errorf("Replay(%d): got campaigns %v from %d segments, want %v from %d", tc.from, got, st.Segments, tc.want, len(tc.want))
		}
	}
}

// TestReplayTornFirstRecord: a newest segment whose only record is torn is
// truncated to its header, not removed; a segment torn inside its header is
// removed.
func TestReplayTornFirstRecord(t *testing.T) {
	var b Batch
	b.AddImpression(1, t0, unixMinute(t0.UnixNano()), 1, 2, nil, nil)
	seg, _ := writeSegment(t, &b)
	for _, tc := range []struct {
		cut      int // bytes of the segment kept
		wantSize int // the segment's size after the replay, -1: removed
	}{
		{walHeader + 1, walHeader},
		{len(seg) - 1, walHeader},
		{walHeader - 1, -1},
	} {
		d := openTestDir(t)
		path := d.segmentPath(1)
		writeFile(t, path, seg[:tc.cut], 0o644)
		recs, st, err := collect(t, d)
		if err != nil || len(recs) != 0 || st.Torn == nil {
			t.Fatalf("cut at %d: got %d records, torn %v, %v; want 0 records, a torn tail, nil", tc.cut, len(recs), st.Torn, err)
		}
		size := -1
		if fi, err := os.Stat(path); err == nil {
			size = int(fi.Size())
		}
		if size != tc.wantSize {
			t.Errorf("cut at %d: segment of %d bytes after the replay, want %d", tc.cut, size, tc.wantSize)
		}
	}
}
