package sketch

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
)

// A frequency counter's state, as WriteTo writes it, integers
// little-endian:
//
//	'f' kind:byte version:byte, then
//	exact ('x'): latest:int64 shards:uint32,
//	    per shard: pairs:uint32, pairs × (key:uint64 cells:uvarint,
//	      cells × (start:varint n:uvarint))
//	    start: the first cell's Unix minute, then each one's distance from
//	      the one before; n: level<<30 | count
//	sketch ('s'): capacity:uint64 depth:uint8 blocks_per_pair:float64
//	    levels:uint8, levels × (slice_s:int64 slots:uint32 blocks:uint64),
//	    then per level: slots × tag:int64, blocks × slots × 16 × count:uint32
//	    (as laid out in memory: block-major)
//	crc:uint32, the CRC-32C of every byte before it
//
// The sketch writes a slot that held no slice as zeros; ReadFrom checks it.
const (
	freqMagic      = 'f'
	freqKindExact  = 'x'
	freqKindSketch = 's'
	freqVersion    = 1
	freqChunk      = 1 << 16
	freqMaxCells   = 163 // the most cells a pair holds (TestFrequencyExactCellBound)
)

var (
	freqCRC = crc32.MakeTable(crc32.Castagnoli)
	// errFreqData is wrapped by ReadFrom errors for a damaged state.
	errFreqData = errors.New("sketch: malformed frequency state")
)

// freqWriter writes to w, counting the bytes and their CRC-32C.
type freqWriter struct {
	w   io.Writer
	n   int64
	crc uint32
	err error
}

func (fw *freqWriter) write(p []byte) {
	if fw.err != nil {
		return
	}
	k, err := fw.w.Write(p)
	fw.n += int64(k)
	fw.crc = crc32.Update(fw.crc, freqCRC, p[:k])
	if err != nil {
		fw.err = fmt.Errorf("sketch: cannot write frequency state: %w", err)
	}
}

// finish writes the checksum.
func (fw *freqWriter) finish() (int64, error) {
	fw.write(le.AppendUint32(nil, fw.crc))
	return fw.n, fw.err
}

func freqHeader(kind byte) []byte { return []byte{freqMagic, kind, freqVersion} }

// WriteTo implements Frequency. Each shard's pairs are encoded under its
// lock into one reused buffer, then written outside it, one Write per
// shard; w needs no buffering.
func (x *FrequencyExact) WriteTo(w io.Writer) (int64, error) {
	fw := &freqWriter{w: w}
	buf := freqHeader(freqKindExact)
	buf = le.AppendUint64(buf, uint64(x.latest.Load()))
	buf = le.AppendUint32(buf, freqShards)
	for i := range x.shards {
		buf = x.shards[i].appendState(buf)
		fw.write(buf)
		buf = buf[:0]
	}
	return fw.finish()
}

func (s *freqShard) appendState(b []byte) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	b = le.AppendUint32(b, uint32(len(s.pairs)))
	for key, cells := range s.pairs {
		b = le.AppendUint64(b, key)
		b = binary.AppendUvarint(b, uint64(len(cells)))
		prev := int64(0)
		for i, c := range cells {
			if i == 0 {
				b = binary.AppendVarint(b, int64(c.start))
			} else {
				b = binary.AppendUvarint(b, uint64(int64(c.start)-prev))
			}
			prev = int64(c.start)
			b = binary.AppendUvarint(b, uint64(c.n))
		}
	}
	return b
}

// WriteTo implements Frequency. The state is about Bytes long, all
// counters included, zero or not. Each level's tags are read first, then
// its counters, with atomic loads and no lock, through a 64 KiB buffer; w
// needs no buffering. A slot retagged meanwhile is written with its old
// tag, so its new counts read back as the old slice's: over the truth,
// never under.
func (f *FrequencySketch) WriteTo(w io.Writer) (int64, error) {
	fw := &freqWriter{w: w}
	fw.write(f.layout())
	buf := make([]byte, 0, freqChunk)
	for l := range f.levels {
		t := &f.levels[l]
		tags := make([]int64, t.slots)
		for r := range tags {
			tags[r] = t.tags[r].Load()
			buf = le.AppendUint64(buf, uint64(tags[r]))
		}
		for b := range t.blocks {
			if len(buf)+int(t.slots)*freqBlockCounters*4 > freqChunk {
				fw.write(buf)
				buf = buf[:0]
			}
			for r, tag := range tags {
				c := t.cell(b, int64(r))
				for i := range c {
					v := uint32(0)
					if tag != freqNoSlice {
						v = c[i].Load()
					}
					buf = le.AppendUint32(buf, v)
				}
			}
		}
	}
	fw.write(buf)
	return fw.finish()
}

// layout is the sketch's header: kind and parameters.
func (f *FrequencySketch) layout() []byte {
	b := freqHeader(freqKindSketch)
	b = le.AppendUint64(b, uint64(f.capacity))
	b = append(b, byte(f.params.depth))
	b = le.AppendUint64(b, math.Float64bits(f.params.blocksPerPair))
	b = append(b, freqLevels)
	for l := range f.levels {
		t := &f.levels[l]
		b = le.AppendUint64(b, uint64(t.g))
		b = le.AppendUint32(b, uint32(t.slots))
		b = le.AppendUint64(b, t.blocks)
	}
	return b
}

// freqReader reads a state through a buffer, summing its CRC-32C.
type freqReader struct {
	br  *bufio.Reader
	crc uint32
	one [1]byte
}

func newFreqReader(r io.Reader) *freqReader {
	return &freqReader{br: bufio.NewReaderSize(r, freqChunk)}
}

// full fills p.
func (fr *freqReader) full(p []byte) error {
	if _, err := io.ReadFull(fr.br, p); err != nil {
		return fmt.Errorf("sketch: cannot read frequency state: %w", short(err))
	}
	fr.crc = crc32.Update(fr.crc, freqCRC, p)
	return nil
}

// ReadByte implements io.ByteReader, for the varints.
func (fr *freqReader) ReadByte() (byte, error) {
	if err := fr.full(fr.one[:]); err != nil {
		return 0, err
	}
	return fr.one[0], nil
}

func (fr *freqReader) u32() (uint32, error) {
	var b [4]byte
	err := fr.full(b[:])
	return le.Uint32(b[:]), err
}

func (fr *freqReader) u64() (uint64, error) {
	var b [8]byte
	err := fr.full(b[:])
	return le.Uint64(b[:]), err
}

// header reads the magic, kind and version, and checks the kind is want.
func (fr *freqReader) header(want byte) error {
	var h [3]byte
	if err := fr.full(h[:]); err != nil {
		return err
	}
	kinds := map[byte]string{freqKindExact: "exact", freqKindSketch: "sketch"}
	switch {
	case h[0] != freqMagic || kinds[h[1]] == "":
		return fmt.Errorf("%w: not a frequency state (header %q)", errFreqData, h[:2])
	case h[1] != want:
		return fmt.Errorf("%w: frequency %s state, want %s", ErrLayoutMismatch, kinds[h[1]], kinds[want])
	case h[2] != freqVersion:
		return fmt.Errorf("%w: frequency state version %d, want %d", errFreqData, h[2], freqVersion)
	}
	return nil
}

// finish reads the checksum, compares it, and checks the input ends there.
func (fr *freqReader) finish() error {
	sum := fr.crc
	got, err := fr.u32()
	if err != nil {
		return err
	}
	if got != sum {
		return fmt.Errorf("%w: checksum %#08x, want %#08x", errFreqData, got, sum)
	}
	return expectEOF(fr.br)
}

// ReadFrom implements Frequency.
func (x *FrequencyExact) ReadFrom(r io.Reader) (int64, error) {
	cr := &countingReader{r: r}
	fr := newFreqReader(cr)
	latest, maps, err := readFreqExact(fr)
	if err == nil {
		err = fr.finish()
	}
	if err != nil {
		latest, maps = math.MinInt64, [freqShards]map[uint64][]freqCell{}
		for i := range maps {
			maps[i] = make(map[uint64][]freqCell)
		}
	}
	x.latest.Store(latest)
	for i := range x.shards {
		s := &x.shards[i]
		s.mu.Lock()
		s.pairs, s.peak, s.cells = maps[i], len(maps[i]), 0
		for _, c := range s.pairs {
			s.cells += freqCellsBytes(cap(c))
		}
		s.mu.Unlock()
	}
	return cr.n, err
}

func readFreqExact(fr *freqReader) (latest int64, maps [freqShards]map[uint64][]freqCell, err error) {
	if err = fr.header(freqKindExact); err != nil {
		return
	}
	v, err := fr.u64()
	if err != nil {
		return
	}
	latest = int64(v)
	if m := floorDiv(latest, 60); latest != math.MinInt64 && (m < math.MinInt32 || m > math.MaxInt32) {
		return 0, maps, fmt.Errorf("%w: latest time %d out of range", errFreqData, latest)
	}
	shards, err := fr.u32()
	if err != nil {
		return
	}
	if shards != freqShards {
		return 0, maps, fmt.Errorf("%w: %d shards, want %d", ErrLayoutMismatch, shards, freqShards)
	}
	for i := range maps {
		if maps[i], err = readFreqShard(fr, uint64(i)); err != nil {
			return 0, maps, fmt.Errorf("sketch: frequency shard %d: %w", i, err)
		}
	}
	return latest, maps, nil
}

func readFreqShard(fr *freqReader, shard uint64) (map[uint64][]freqCell, error) {
	n, err := fr.u32()
	if err != nil {
		return nil, err
	}
	m := make(map[uint64][]freqCell, min(n, 1<<12))
	for range n {
		key, err := fr.u64()
		if err != nil {
			return nil, err
		}
		if _, dup := m[key]; dup || key%freqShards != shard {
			return nil, fmt.Errorf("%w: pair %#x twice or in the wrong shard", errFreqData, key)
		}
		if m[key], err = readFreqCells(fr); err != nil {
			return nil, fmt.Errorf("pair %#x: %w", key, err)
		}
	}
	return m, nil
}

// readFreqCells reads one pair's cells and checks them: between 1 and
// freqMaxCells, each aligned to its level and counting at least one
// exposure, in order and not overlapping, within 32-bit minutes.
func readFreqCells(fr *freqReader) ([]freqCell, error) {
	n, err := binary.ReadUvarint(fr)
	if err != nil {
		return nil, short(err)
	}
	if n == 0 || n > freqMaxCells {
		return nil, fmt.Errorf("%w: %d cells", errFreqData, n)
	}
	cells := make([]freqCell, n)
	var start, end int64
	for i := range cells {
		if i == 0 {
			start, err = binary.ReadVarint(fr)
		} else {
			var d uint64
			d, err = binary.ReadUvarint(fr)
			start += int64(min(d, math.MaxUint32))
		}
		if err != nil {
			return nil, short(err)
		}
		v, err := binary.ReadUvarint(fr)
		if err != nil {
			return nil, short(err)
		}
		level, count := int(v>>freqCountBits), uint32(v&freqMaxCount)
		if v > math.MaxUint32 || count == 0 || start < math.MinInt32 || start > math.MaxInt32 ||
			mod(start, freqSlice[level]/60) != 0 || start*60 < end {
			return nil, fmt.Errorf("%w: cell %d (minute %d, %#x) invalid", errFreqData, i, start, v)
		}
		cells[i] = newFreqCell(start, level, count)
		end = cells[i].endSec()
	}
	return cells, nil
}

// ReadFrom implements Frequency. It reads the counters into the sketch's
// own memory through a 64 KiB buffer.
func (f *FrequencySketch) ReadFrom(r io.Reader) (int64, error) {
	cr := &countingReader{r: r}
	fr := newFreqReader(cr)
	err := f.readState(fr)
	if err == nil {
		err = fr.finish()
	}
	if err != nil {
		f.reset()
	}
	return cr.n, err
}

func (f *FrequencySketch) readState(fr *freqReader) error {
	if err := fr.header(freqKindSketch); err != nil {
		return err
	}
	want := f.layout()
	got := make([]byte, len(want))
	copy(got, want[:3])
	if err := fr.full(got[3:]); err != nil {
		return err
	}
	if string(got) != string(want) {
		return fmt.Errorf("%w: frequency sketch of other parameters (capacity %d, depth %d)", ErrLayoutMismatch, le.Uint64(got[3:]), got[11])
	}
	buf := make([]byte, freqChunk)
	for l := range f.levels {
		if err := f.levels[l].readState(fr, buf); err != nil {
			return fmt.Errorf("sketch: frequency level %d: %w", l, err)
		}
	}
	return nil
}

// readState reads one level's tags and counters: a tag must be a slice the
// slot can hold, and a slot that held none must be zero.
func (t *freqTable) readState(fr *freqReader, buf []byte) error {
	tags := make([]int64, t.slots)
	for r := range tags {
		v, err := fr.u64()
		if err != nil {
			return err
		}
		tags[r] = int64(v)
		if tags[r] != freqNoSlice && mod(tags[r], t.slots) != int64(r) {
			return fmt.Errorf("%w: slot %d tagged with slice %d", errFreqData, r, tags[r])
		}
	}
	run := int(t.slots) * freqBlockCounters * 4 // one block of every slot
	per := len(buf) / run
	for b := uint64(0); b < t.blocks; b += uint64(per) {
		p := buf[:run*int(min(uint64(per), t.blocks-b))]
		if err := fr.full(p); err != nil {
			return err
		}
		for i := range len(p) / 4 {
			v := le.Uint32(p[4*i:])
			if v != 0 && tags[i/freqBlockCounters%int(t.slots)] == freqNoSlice {
				return fmt.Errorf("%w: counts in a slot that held no slice", errFreqData)
			}
			if c := &t.counters[b*uint64(t.slots)*freqBlockCounters+uint64(i)]; v != 0 || c.Load() != 0 {
				c.Store(v)
			}
		}
	}
	for r, tag := range tags {
		t.tags[r].Store(tag)
	}
	return nil
}

// reset empties the sketch, as its constructor returns it.
func (f *FrequencySketch) reset() {
	for l := range f.levels {
		t := &f.levels[l]
		for i := range t.counters {
			t.counters[i].Store(0)
		}
		for i := range t.tags {
			t.tags[i].Store(freqNoSlice)
		}
	}
}
