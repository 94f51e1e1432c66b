package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// Kind tells what a log record holds.
type Kind uint8

const (
	// KindCampaign records a created campaign.
	KindCampaign Kind = 1
	// KindImpression records one counted impression.
	KindImpression Kind = 2
	// KindDefine records a campaign's whole definition: at creation, and
	// again after every change (a later record of the same index replaces
	// the earlier one). It supersedes KindCampaign, which earlier versions
	// wrote and which is still read.
	KindDefine Kind = 3
	// KindDelete records that the campaign of an index was deleted: its
	// definition, counts and dedup pairs are gone, and no record of that
	// index follows it.
	KindDelete Kind = 4
	// KindDuplicate records one impression dedup did not count: its
	// campaign, arrival and event minute, for the campaign's duplicate
	// counts. It carries no pair: a duplicate changes no dedup state.
	KindDuplicate Kind = 5
	// KindSeen is a duplicate record that also carries the user's reach
	// hash (Record.Reach), so that a replay counts the user in the reach
	// windows of the duplicate's event time. It supersedes KindDuplicate,
	// which earlier versions wrote.
	KindSeen Kind = 6
)

// Record is one log entry. Slices in a Record handed to a replay callback
// point into the reader's buffer and are valid only during the callback.
type Record struct {
	Kind Kind

	// Campaign is the campaign's index, assigned at creation: impressions
	// refer to it rather than repeat the id.
	Campaign uint32

	// KindCampaign and KindDefine: the campaign's id, name and start.
	ID, Name []byte
	Start    time.Time
	// KindDefine only: the campaign's end (HasEnd false: none), and the
	// suffix its dedup pairs are keyed with after the id (see
	// tracker.Campaign), so that a campaign created again under a deleted
	// one's id shares none of its pairs.
	End     time.Time
	HasEnd  bool
	KeyTail []byte
	// KindDefine only: the campaign's frequency caps (none in an earlier
	// version's records).
	Caps []Cap

	// KindImpression, KindDuplicate and KindSeen: when the impression
	// arrived (the dedup clock) and the event minute it was counted in.
	// KindImpression also has the pair: its 128-bit key in bloom mode, or
	// the user id in exact mode (User non-nil), which must replay the
	// pair's bytes; and the impression's ad id (AdID; nil when it had
	// none, which is also all an earlier version's records say).
	Arrival time.Time
	Minute  int64
	KeyLo   uint64
	KeyHi   uint64
	User    []byte
	AdID    []byte
	// KindSeen only: the user's reach hash.
	Reach uint64
}

// recordHeader is crc32c (4 bytes), payload length (2 bytes) and the
// length's complement (2 bytes). The CRC covers the payload; the complement
// guards the length, so that damage to a length is told from a torn write:
// a torn record has a sound length and too few bytes after it.
const recordHeader = 8

// maxPayload bounds one record: a campaign with a 64-byte id and a
// 200-rune name, or an impression with a 256-byte user id, fit easily.
const maxPayload = 1<<16 - 1

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Batch accumulates framed records for one Log.Append. Its zero value is
// ready to use; Reset empties it for reuse. It is not safe for concurrent
// use.
type Batch struct {
	buf  []byte
	n    int
	sync bool
}

// Len returns the number of records in the batch.
func (b *Batch) Len() int { return b.n }

// Reset empties the batch, keeping its memory.
func (b *Batch) Reset() {
	b.buf = b.buf[:0]
	b.n = 0
	b.sync = false
}

// AddCampaign appends a campaign record and marks the batch sync: Append
// fsyncs it before returning, whatever the fsync interval.
func (b *Batch) AddCampaign(index uint32, id, name string, start time.Time) {
	b.frame(func(p []byte) []byte {
		p = append(p, byte(KindCampaign))
		p = binary.AppendUvarint(p, uint64(index))
		p = binary.AppendUvarint(p, uint64(len(id)))
		p = append(p, id...)
		p = binary.AppendUvarint(p, uint64(len(name)))
		p = append(p, name...)
		return binary.LittleEndian.AppendUint64(p, uint64(start.UnixNano()))
	})
	b.sync = true
}

// Cap is a campaign's frequency cap as the log keeps it: at most Max
// exposures per Window.
type Cap struct {
	Max    uint64
	Window time.Duration
}

// MaxCaps bounds the caps of one definition record.
const MaxCaps = 4

// AddDefine appends a campaign definition record and marks the batch
// sync, as AddCampaign does. end is ignored unless hasEnd. caps must hold
// at most MaxCaps caps; none are written as nothing, as earlier versions
// wrote their records.
func (b *Batch) AddDefine(index uint32, id, name string, start time.Time, end time.Time, hasEnd bool, keyTail string, caps []Cap) {
	if len(caps) > MaxCaps {
		panic("BUG: definition with more than MaxCaps caps")
	}
	b.frame(func(p []byte) []byte {
		p = append(p, byte(KindDefine))
		p = binary.AppendUvarint(p, uint64(index))
		p = binary.AppendUvarint(p, uint64(len(id)))
		p = append(p, id...)
		p = binary.AppendUvarint(p, uint64(len(name)))
		p = append(p, name...)
		p = binary.LittleEndian.AppendUint64(p, uint64(start.UnixNano()))
		if hasEnd {
			p = append(p, 1)
			p = binary.LittleEndian.AppendUint64(p, uint64(end.UnixNano()))
		} else {
			p = append(p, 0)
		}
		p = binary.AppendUvarint(p, uint64(len(keyTail)))
		p = append(p, keyTail...)
		if len(caps) > 0 {
			p = binary.AppendUvarint(p, uint64(len(caps)))
			for _, c := range caps {
				p = binary.AppendUvarint(p, c.Max)
				p = binary.AppendUvarint(p, uint64(c.Window))
			}
		}
		return p
	})
	b.sync = true
}

// AddDelete appends a deletion record and marks the batch sync.
func (b *Batch) AddDelete(index uint32) {
	b.frame(func(p []byte) []byte {
		p = append(p, byte(KindDelete))
		return binary.AppendUvarint(p, uint64(index))
	})
	b.sync = true
}

// AddImpression appends an impression record. user is nil in bloom mode,
// where the key is enough to replay the filter; exact mode passes the user
// id, since its sets hold the pair's bytes. ad is the impression's ad id,
// nil or empty for none. minute must not be after arrival's minute.
//
// The byte after the minute says what follows: bit 0 clear, the key; set,
// the user id; bit 1 set, the ad id after them (earlier versions wrote 0
// or 1 only).
func (b *Batch) AddImpression(campaign uint32, arrival time.Time, minute int64, keyLo, keyHi uint64, user, ad []byte) {
	b.frame(func(p []byte) []byte {
		p = append(p, byte(KindImpression))
		p = binary.AppendUvarint(p, uint64(campaign))
		ns := arrival.UnixNano()
		p = binary.LittleEndian.AppendUint64(p, uint64(ns))
		p = binary.AppendUvarint(p, uint64(unixMinute(ns)-minute))
		var flags byte
		if user != nil {
			flags |= impressionUser
		}
		if len(ad) > 0 {
			flags |= impressionAd
		}
		p = append(p, flags)
		if user == nil {
			p = binary.LittleEndian.AppendUint64(p, keyLo)
			p = binary.LittleEndian.AppendUint64(p, keyHi)
		} else {
			p = binary.AppendUvarint(p, uint64(len(user)))
			p = append(p, user...)
		}
		if len(ad) > 0 {
			p = binary.AppendUvarint(p, uint64(len(ad)))
			p = append(p, ad...)
		}
		return p
	})
}

// The flags of an impression record.
const (
	impressionUser = 1 << 0
	impressionAd   = 1 << 1
)

// AddDuplicate appends a duplicate record (KindSeen) with the user's reach
// hash. minute must not be after arrival's minute. It needs at most the
// bytes ImpressionSize gives.
func (b *Batch) AddDuplicate(campaign uint32, arrival time.Time, minute int64, reach uint64) {
	b.frame(func(p []byte) []byte {
		p = append(p, byte(KindSeen))
		p = binary.AppendUvarint(p, uint64(campaign))
		ns := arrival.UnixNano()
		p = binary.LittleEndian.AppendUint64(p, uint64(ns))
		p = binary.AppendUvarint(p, uint64(unixMinute(ns)-minute))
		return binary.LittleEndian.AppendUint64(p, reach)
	})
}

// frame appends header space, the payload written by fill, then fills in
// the header.
func (b *Batch) frame(fill func([]byte) []byte) {
	start := len(b.buf)
	b.buf = append(b.buf, make([]byte, recordHeader)...)
	b.buf = fill(b.buf)
	n := len(b.buf) - start - recordHeader
	if n > maxPayload {
		panic(fmt.Sprintf("BUG: log record of %d bytes", n))
	}
	h := b.buf[start : start+recordHeader]
	binary.LittleEndian.PutUint16(h[4:], uint16(n))
	binary.LittleEndian.PutUint16(h[6:], ^uint16(n))
	binary.LittleEndian.PutUint32(h, crc32.Checksum(b.buf[start+recordHeader:], crcTable))
	b.n++
}

func unixMinute(ns int64) int64 {
	s := ns / 1e9
	if ns < 0 && ns%1e9 != 0 {
		s--
	}
	m := s / 60
	if s < 0 && s%60 != 0 {
		m--
	}
	return m
}

var errBadRecord = errors.New("malformed record")

// decode parses one record payload into r.
func (r *Record) decode(p []byte) error {
	if len(p) < 1 {
		return errBadRecord
	}
	*r = Record{Kind: Kind(p[0])}
	d := decoder{p: p[1:]}
	r.Campaign = d.uint32()
	switch r.Kind {
	case KindCampaign:
		r.ID = d.bytes()
		r.Name = d.bytes()
		r.Start = time.Unix(0, int64(d.u64())).UTC()
	case KindDefine:
		r.ID = d.bytes()
		r.Name = d.bytes()
		r.Start = time.Unix(0, int64(d.u64())).UTC()
		switch d.byte() {
		case 0:
		case 1:
			r.HasEnd = true
			r.End = time.Unix(0, int64(d.u64())).UTC()
		default:
			d.err = errBadRecord
		}
		r.KeyTail = d.bytes()
		if len(d.p) > 0 && d.err == nil {
			n := d.uvarint()
			if n == 0 || n > MaxCaps {
				d.err = errBadRecord // written only when there are some
				break
			}
			r.Caps = make([]Cap, n)
			for i := range r.Caps {
				r.Caps[i] = Cap{Max: d.uvarint(), Window: time.Duration(d.uvarint())}
			}
		}
	case KindDelete:
	case KindDuplicate, KindSeen:
		ns := int64(d.u64())
		r.Arrival = time.Unix(0, ns)
		r.Minute = unixMinute(ns) - int64(d.uvarint())
		if r.Kind == KindSeen {
			r.Reach = d.u64()
		}
	case KindImpression:
		ns := int64(d.u64())
		r.Arrival = time.Unix(0, ns)
		r.Minute = unixMinute(ns) - int64(d.uvarint())
		flags := d.byte()
		if flags&^(impressionUser|impressionAd) != 0 {
			d.err = errBadRecord
		}
		if flags&impressionUser == 0 {
			r.KeyLo, r.KeyHi = d.u64(), d.u64()
		} else {
			r.User = d.bytes()
			if r.User == nil {
				r.User = []byte{}
			}
		}
		if flags&impressionAd != 0 {
			if r.AdID = d.bytes(); len(r.AdID) == 0 {
				d.err = errBadRecord // written only when there is one
			}
		}
	default:
		return fmt.Errorf("unknown record kind %d", r.Kind)
	}
	if d.err == nil && len(d.p) != 0 {
		d.err = errBadRecord
	}
	return d.err
}

// decoder reads fields off a byte slice; the first failure sticks.
type decoder struct {
	p   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.p)
	if n <= 0 {
		d.err = errBadRecord
		return 0
	}
	d.p = d.p[n:]
	return v
}

func (d *decoder) uint32() uint32 {
	v := d.uvarint()
	if v > 1<<32-1 {
		d.err = errBadRecord
	}
	return uint32(v)
}

func (d *decoder) u64() uint64 {
	if d.err != nil || len(d.p) < 8 {
		d.err = errBadRecord
		return 0
	}
	v := binary.LittleEndian.Uint64(d.p)
	d.p = d.p[8:]
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.p) < 1 {
		d.err = errBadRecord
		return 0
	}
	v := d.p[0]
	d.p = d.p[1:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.p)) {
		d.err = errBadRecord
		return nil
	}
	v := d.p[:n:n]
	d.p = d.p[n:]
	return v
}

// ImpressionSize bounds the bytes Batch.AddImpression adds for a user id
// of userLen bytes and an ad id of adLen, whether the record carries the
// user id or the pair's key: what to Reserve for it.
func ImpressionSize(userLen, adLen int) int {
	n := recordHeader + 1 + binary.MaxVarintLen32 + 8 + binary.MaxVarintLen64 + 1 + max(16, binary.MaxVarintLen64+userLen)
	if adLen > 0 {
		n += binary.MaxVarintLen64 + adLen
	}
	return n
}

// CampaignSize bounds the bytes Batch.AddCampaign adds for a campaign with
// id and name of these lengths.
func CampaignSize(idLen, nameLen int) int {
	return recordHeader + 1 + binary.MaxVarintLen32 + 2*binary.MaxVarintLen64 + idLen + nameLen + 8
}

// DefineSize bounds the bytes Batch.AddDefine adds for a campaign with id,
// name and key tail of these lengths.
func DefineSize(idLen, nameLen, keyTailLen int) int {
	return CampaignSize(idLen, nameLen) + 1 + 8 + binary.MaxVarintLen64 + keyTailLen + binary.MaxVarintLen64 + MaxCaps*2*binary.MaxVarintLen64
}

// DeleteSize bounds the bytes Batch.AddDelete adds.
const DeleteSize = recordHeader + 1 + binary.MaxVarintLen32
