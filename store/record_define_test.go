package store

import (
	"testing"
	"time"
)

// TestDefineAndDeleteRecords: a definition with and without an end, and a
// deletion, come back from the log as written, and each marks its batch
// for fsync like a campaign record; DefineSize and DeleteSize bound what
// they add.
func TestDefineAndDeleteRecords(t *testing.T) {
	end := t0.Add(90 * time.Minute)
	var b Batch
	b.AddDefine(3, "spring", "Spring", t0, end, true, "0123456789abcdef", nil)
	if !b.sync {
		t.Fatal("a definition did not mark its batch sync")
	}
	if n := len(b.buf); n > DefineSize(6, 6, 16) {
		t.Fatalf("definition of %d bytes, DefineSize says at most %d", n, DefineSize(6, 6, 16))
	}
	before := len(b.buf)
	b.AddDefine(4, "x", "X", t0, end, false, "", nil)
	var del Batch
	del.AddDelete(1<<32 - 1)
	if !del.sync || len(del.buf) > DeleteSize {
		t.Fatalf("deletion: sync %v, %d bytes (DeleteSize %d)", del.sync, len(del.buf), DeleteSize)
	}
	b.buf = append(b.buf, del.buf...)
	b.n++
	if len(b.buf)-before > DefineSize(1, 1, 0)+DeleteSize {
		t.Fatal("records larger than their sizes")
	}
	_, d := writeSegment(t, &b)
	recs, _, err := collect(t, d)
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		recs[i].KeyTail = clone(recs[i].KeyTail)
	}
	if len(recs) != 3 {
		t.Fatalf("%d records", len(recs))
	}
	r := recs[0]
	if r.Kind != KindDefine || r.Campaign != 3 || string(r.ID) != "spring" || string(r.Name) != "Spring" ||
		!r.Start.Equal(t0) || !r.HasEnd || !r.End.Equal(end) || string(r.KeyTail) != "0123456789abcdef" {
		t.Fatalf("definition read back as %+v", r)
	}
	if r := recs[1]; r.Kind != KindDefine || r.Campaign != 4 || r.HasEnd || !r.End.IsZero() || len(r.KeyTail) != 0 {
		t.Fatalf("definition without end read back as %+v", r)
	}
	if r := recs[2]; r.Kind != KindDelete || r.Campaign != 1<<32-1 || r.ID != nil {
		t.Fatalf("deletion read back as %+v", r)
	}
}

// TestDefineRecordRefusesBadEndMarker: an end marker other than 0 or 1, a
// missing end, and bytes after a deletion's index are damage.
func TestDefineRecordRefusesBadEndMarker(t *testing.T) {
	for name, payload := range map[string][]byte{
		"end marker 2":       {3, 0, 1, 'a', 1, 'A', 0, 0, 0, 0, 0, 0, 0, 0, 2, 0},
		"end missing":        {3, 0, 1, 'a', 1, 'A', 0, 0, 0, 0, 0, 0, 0, 0, 1},
		"tail missing":       {3, 0, 1, 'a', 1, 'A', 0, 0, 0, 0, 0, 0, 0, 0, 0},
		"delete trailing":    {4, 0, 0},
		"delete no index":    {4},
		"define well-formed": {3, 0, 1, 'a', 1, 'A', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	} {
		var r Record
		err := r.decode(payload)
		if ok := name == "define well-formed"; (err == nil) != ok {
			t.Errorf("%s: decode = %v", name, err)
		}
	}
}

// TestDuplicateRecord: a duplicate record comes back with its campaign,
// arrival and event minute, on both sides of the epoch, and fits in what
// ImpressionSize reserves for the impression it stands for.
func TestDuplicateRecord(t *testing.T) {
	for _, arrival := range []time.Time{t0, time.Unix(-61, 5)} {
		minute := unixMinute(arrival.UnixNano()) - 3
		var b Batch
		b.AddDuplicate(7, arrival, minute, 0xfeedface_deadbeef)
		if b.sync {
			t.Fatal("a duplicate marked its batch sync")
		}
		if len(b.buf) > ImpressionSize(0, 0) {
			t.Fatalf("duplicate of %d bytes, more than ImpressionSize(0) = %d", len(b.buf), ImpressionSize(0, 0))
		}
		_, d := writeSegment(t, &b)
		recs, _, err := collect(t, d)
		if err != nil {
			t.Fatal(err)
		}
		sameRecords(t, recs, []Record{{Kind: KindSeen, Campaign: 7, Arrival: arrival, Minute: minute, Reach: 0xfeedface_deadbeef}})
	}
	var r Record
	if err := r.decode([]byte{5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}); err == nil {
		t.Fatal("a duplicate record with trailing bytes decoded")
	}
	// An earlier version's duplicate record (kind 5, no reach hash).
	if err := r.decode([]byte{5, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0}); err != nil || r.Kind != KindDuplicate || r.Campaign != 7 || r.Reach != 0 {
		t.Fatalf("kind 5 record: %+v, %v", r, err)
	}
	if err := r.decode([]byte{6, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7}); err == nil {
		t.Fatal("a seen record with a short reach hash decoded")
	}
}

// TestImpressionRecordAdID: the ad id comes back with the pair in both
// forms; an impression without one, and an earlier version's record,
// has none; flags other than the two defined are refused.
func TestImpressionRecordAdID(t *testing.T) {
	minute := unixMinute(t0.UnixNano())
	for _, c := range []struct {
		name     string
		user, ad []byte
	}{
		{"key, ad", nil, []byte("ad-1")},
		{"user, ad", []byte("u1"), []byte("ad-2")},
		{"key, no ad", nil, nil},
		{"user, empty ad", []byte("u1"), []byte{}},
	} {
		var b Batch
		b.AddImpression(3, t0, minute, 11, 12, c.user, c.ad)
		if len(b.buf) > ImpressionSize(len(c.user), len(c.ad)) {
			t.Fatalf("%s: %d bytes, more than ImpressionSize = %d", c.name, len(b.buf), ImpressionSize(len(c.user), len(c.ad)))
		}
		var r Record
		if err := r.decode(b.buf[recordHeader:]); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if string(r.AdID) != string(c.ad) || (len(c.ad) == 0) != (r.AdID == nil) {
			t.Errorf("%s: ad id %q, want %q", c.name, r.AdID, c.ad)
		}
		if c.user == nil && (r.KeyLo != 11 || r.KeyHi != 12 || r.User != nil) {
			t.Errorf("%s: key %d/%d user %q", c.name, r.KeyLo, r.KeyHi, r.User)
		}
		if c.user != nil && string(r.User) != string(c.user) {
			t.Errorf("%s: user %q", c.name, r.User)
		}
	}
	if ImpressionSize(3, 0) >= ImpressionSize(3, 1) {
		t.Fatal("ImpressionSize does not grow with the ad id")
	}
	var r Record
	// kind 2, campaign 0, arrival 0, minute delta 0, then the flags.
	head := []byte{2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	for flags, ok := range map[byte]bool{0: true, 1: true, 2: false, 3: false, 4: false, 0x80: false} {
		p := append(append([]byte(nil), head...), flags)
		if flags&1 == 0 {
			p = append(p, make([]byte, 16)...)
		} else {
			p = append(p, 1, 'u')
		}
		if err := r.decode(p); (err == nil) != ok {
			t.Errorf("flags %#x without an ad id: decode = %v", flags, err)
		}
	}
	// Flag 2 with an empty ad id is never written: refused.
	if err := r.decode(append(append(append([]byte(nil), head...), 2), append(make([]byte, 16), 0)...)); err == nil {
		t.Error("an empty ad id decoded")
	}
}
