package sketch

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"slices"
	"time"
)

// A window's state, as WriteTo writes it, all integers little-endian:
//
//	Bloom: 'P' slice_ns:int64 slots:uint32 shards:uint32 m:uint64 k:uint32
//	       per shard: open:sub live:uint32 open's words (m/64 uint64),
//	         then live × (sub, words), oldest first
//	       sub: first_ns:int64 last_ns:int64 pairs:uint32
//	       (blocked filters: a key's k bits in one 512-bit block)
//	Exact: 'X' slice_ns:int64 generations:uint32 shards:uint32
//	       per shard: epoch:int64 head:uint32
//	         per generation: count:uint32, count × (len:uint16 key:[len]byte)
//
// A shard never touched has epoch noEpoch. Exact keys are pairKey encodings.
// Exact picks a key's shard with a per-process maphash seed, so ReadFrom
// re-shards the keys rather than restoring shards one to one.

const (
	kindBloom = 'P' // a pool of blocked sub-filters per shard
	// kindBloomV1 and kindBloomV2 are earlier Bloom states: one unblocked
	// filter per generation, then one blocked filter per fixed slice. Their
	// bits cannot be re-laid out (the keys are not kept), so they are
	// refused as a layout mismatch.
	kindBloomV1 = 'B'
	kindBloomV2 = 'C'
	kindExact   = 'X'
	ringLen     = 8 + 4 // epoch, head
	// readBufSize holds the longest key with its length, so a key is
	// parsed from bufio's buffer in place.
	readBufSize = 1 << 17
)

var (
	_ io.WriterTo   = (*Bloom)(nil)
	_ io.ReaderFrom = (*Bloom)(nil)
	_ io.WriterTo   = (*Exact)(nil)
	_ io.ReaderFrom = (*Exact)(nil)
)

var le = binary.LittleEndian

// WriteTo implements io.WriterTo and Deduper. Each shard's sub-filters
// are copied under its lock into one reused buffer, then written outside
// the lock with one Write per shard; w needs no buffering. Only live
// sub-filters are written.
func (b *Bloom) WriteTo(w io.Writer) (int64, error) {
	l := b.layout()
	buf := l.append(make([]byte, 0, l.size()+b.pool.Slots*(subLen+int(b.m/8))))
	var n int64
	for i := range b.shards {
		buf = b.shards[i].appendState(buf)
		k, err := w.Write(buf)
		n += int64(k)
		if err != nil {
			return n, fmt.Errorf("sketch: cannot write bloom shard %d: %w", i, err)
		}
		buf = buf[:0]
	}
	return n, nil
}

// ReadFrom implements io.ReaderFrom and Deduper. It reads one sub-filter
// at a time into a buffer and copies it into the existing filters, so it
// allocates one sub-filter's worth, not the window's. It needs no
// buffering of r.
func (b *Bloom) ReadFrom(r io.Reader) (int64, error) {
	cr := &countingReader{r: r}
	err := b.readState(cr)
	if err != nil {
		b.reset()
	}
	return cr.n, err
}

func (b *Bloom) layout() layout {
	return layout{kind: kindBloom, slice: b.slice, gens: uint32(b.pool.Slots), shards: uint32(len(b.shards)), m: uint64(b.m), k: uint32(b.k)}
}

// subLen is the size of a sub-filter's account: first, last, n.
const subLen = 8 + 8 + 4

func (b *Bloom) readState(r io.Reader) error {
	if err := b.layout().check(r); err != nil {
		return err
	}
	words := make([]byte, b.m/8)
	var hdr [subLen + 4]byte
	for i := range b.shards {
		s := &b.shards[i]
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return fmt.Errorf("sketch: cannot read bloom shard %d: %w", i, short(err))
		}
		cur, live := decodeSub(hdr[:]), int(le.Uint32(hdr[subLen:]))
		if live > len(s.subs) || cur.n < 0 {
			return fmt.Errorf("sketch: bloom shard %d: %d closed sub-filters in %d slots, open one of %d pairs", i, live, len(s.subs), cur.n)
		}
		if _, err := io.ReadFull(r, words); err != nil {
			return fmt.Errorf("sketch: cannot read bloom shard %d: %w", i, short(err))
		}
		if set := decodeWords(s.cur, words); cur.n == 0 && set != 0 {
			return fmt.Errorf("sketch: bloom shard %d: an empty sub-filter has bits set", i)
		}
		s.curSub, s.head, s.live = cur, 0, 0
		for j := range live {
			if _, err := io.ReadFull(r, hdr[:subLen]); err != nil {
				return fmt.Errorf("sketch: cannot read bloom shard %d: %w", i, short(err))
			}
			if _, err := io.ReadFull(r, words); err != nil {
				return fmt.Errorf("sketch: cannot read bloom shard %d: %w", i, short(err))
			}
			s.subs[j] = decodeSub(hdr[:])
			for blk := 0; blk < len(s.cur); blk += blockWords {
				decodeWords(s.old[s.oldBlock(uint64(blk), j):][:blockWords], words[8*blk:])
			}
			s.live++
		}
	}
	return expectEOF(r)
}

// reset empties every sub-filter, as NewBloom leaves them.
func (b *Bloom) reset() {
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.Lock()
		clear(s.cur)
		s.curSub, s.head, s.live = sub{}, 0, 0
		s.mu.Unlock()
	}
}

// appendState appends the open sub-filter's account, the number of live
// closed ones, the open one's words, then each closed one's account and
// words, oldest first.
func (s *bloomShard) appendState(b []byte) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	b = appendSub(b, s.curSub)
	b = le.AppendUint32(b, uint32(s.live))
	b = appendWords(b, s.cur)
	s.eachLive(func(j int) {
		b = appendSub(b, s.subs[j])
		for blk := 0; blk < len(s.cur); blk += blockWords {
			b = appendWords(b, s.old[s.oldBlock(uint64(blk), j):][:blockWords])
		}
	})
	return b
}

func appendSub(b []byte, x sub) []byte {
	b = le.AppendUint64(b, uint64(x.first))
	b = le.AppendUint64(b, uint64(x.last))
	return le.AppendUint32(b, uint32(x.n))
}

func decodeSub(b []byte) sub {
	return sub{first: int64(le.Uint64(b)), last: int64(le.Uint64(b[8:])), n: int32(le.Uint32(b[16:]))}
}

func appendWords(b []byte, w []uint64) []byte {
	off := len(b)
	b = slices.Grow(b, 8*len(w))[:off+8*len(w)]
	for i, x := range w {
		le.PutUint64(b[off+8*i:], x)
	}
	return b
}

// decodeWords fills w from b and returns the OR of the words.
func decodeWords(w []uint64, b []byte) (or uint64) {
	b = b[:8*len(w)]
	for i := range w {
		w[i] = le.Uint64(b[8*i:])
		or |= w[i]
	}
	return or
}

// WriteTo implements io.WriterTo and Deduper. Each shard's pairs are
// encoded under its lock into one reused buffer, then written outside the
// lock with one Write per shard; w needs no buffering. It fails on a pair
// key longer than 65535 bytes, which the format cannot hold.
func (x *Exact) WriteTo(w io.Writer) (int64, error) {
	buf := x.layout().append(nil)
	var n int64
	for i := range x.shards {
		var err error
		if buf, err = x.shards[i].appendState(buf); err != nil {
			return n, fmt.Errorf("sketch: cannot write exact shard %d: %w", i, err)
		}
		k, err := w.Write(buf)
		n += int64(k)
		if err != nil {
			return n, fmt.Errorf("sketch: cannot write exact shard %d: %w", i, err)
		}
		buf = buf[:0]
	}
	return n, nil
}

// ReadFrom implements io.ReaderFrom and Deduper. It reads r through a
// bufio.Reader; r needs no buffering. The process's shard seed differs
// from the writer's, so every pair is hashed again into its shard here, and
// the loaded shards all take the state's newest epoch: generations of
// shards that lagged behind it are aged to match, and those that had
// already left the window are dropped, as the writer's next touch of those
// shards would have dropped them. The pairs are read first and the maps
// built one at a time after, each at its final size. The pairs loaded
// count against Options.MaxPairs, even beyond it (they were counted, so
// none is dropped); new pairs are then refused until enough expire.
func (x *Exact) ReadFrom(r io.Reader) (int64, error) {
	cr := &countingReader{r: r}
	l := newExactLoad(x)
	var gens [exactShards][]map[string]struct{}
	var bytes [exactShards][]int
	err := l.read(bufio.NewReaderSize(cr, readBufSize), x.layout())
	for i := 0; i < exactShards && err == nil; i++ {
		gens[i], bytes[i], err = l.build(i)
	}
	if err != nil {
		l.ring = newRing(x.Generations())
		for i := range gens {
			gens[i], bytes[i] = make([]map[string]struct{}, l.ring.n), make([]int, l.ring.n)
		}
	}
	live := 0
	for i := range x.shards {
		s := &x.shards[i]
		s.mu.Lock()
		s.ring, s.gens, s.bytes = l.ring, gens[i], bytes[i]
		for _, g := range s.gens {
			live += len(g)
		}
		s.mu.Unlock()
	}
	x.live.Store(int64(live))
	x.oldest.Store(noEpoch)
	return cr.n, err
}

func (x *Exact) layout() layout {
	return layout{kind: kindExact, slice: x.clock.slice, gens: uint32(x.Generations()), shards: exactShards}
}

func (s *exactShard) appendState(b []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b = appendRing(b, s.ring)
	for _, g := range s.gens {
		b = le.AppendUint32(b, uint32(len(g)))
		for k := range g {
			if len(k) > math.MaxUint16 {
				return b, fmt.Errorf("pair key of %d bytes, more than %d", len(k), math.MaxUint16)
			}
			b = le.AppendUint16(b, uint16(len(k)))
			b = append(b, k...)
		}
	}
	return b, nil
}

// exactLoad collects the pairs Exact.ReadFrom installs, by shard and
// generation, as they are written: length, then key. All its shards share
// one ring, at the newest epoch read so far.
type exactLoad struct {
	seed   maphash.Seed
	clock  clock
	ring   ring
	keys   [exactShards][][]byte
	counts [exactShards][]int
}

func newExactLoad(x *Exact) *exactLoad {
	l := &exactLoad{seed: x.seed, clock: x.clock, ring: newRing(x.Generations())}
	for i := range l.keys {
		l.keys[i], l.counts[i] = make([][]byte, l.ring.n), make([]int, l.ring.n)
	}
	return l
}

func (l *exactLoad) read(br *bufio.Reader, want layout) error {
	if err := want.check(br); err != nil {
		return err
	}
	for i := range exactShards {
		if err := l.readShard(br); err != nil {
			return fmt.Errorf("sketch: exact shard %d: %w", i, err)
		}
	}
	return expectEOF(br)
}

// readShard reads one written shard and files its pairs by age: generation
// g of a shard at epoch e with head h holds slice e-(h-g mod n).
func (l *exactLoad) readShard(br *bufio.Reader) error {
	p, err := peek(br, ringLen)
	if err != nil {
		return err
	}
	src, err := l.clock.decodeRing(p, l.ring.n)
	if err != nil {
		return err
	}
	br.Discard(ringLen)
	behind := l.catchUp(src.epoch)
	for g := range src.n {
		age := int64((src.head-g+src.n)%src.n) + behind
		if err := l.readGeneration(br, src.epoch == noEpoch, age); err != nil {
			return fmt.Errorf("generation %d: %w", g, err)
		}
	}
	return nil
}

// catchUp moves the shared ring to epoch e if e is newer, dropping the
// generations that leave the window as advance does, and returns how many
// slices e is behind the ring.
func (l *exactLoad) catchUp(e int64) int64 {
	if e == noEpoch {
		return 0
	}
	for n := l.ring.advance(e); n > 0; n-- {
		i := l.ring.next()
		for j := range l.keys {
			l.keys[j][i], l.counts[j][i] = nil, 0
		}
	}
	return l.ring.epoch - e
}

// readGeneration reads one written generation, filing its pairs under the
// given age, or dropping them if that age has left the window.
func (l *exactLoad) readGeneration(br *bufio.Reader, untouched bool, age int64) error {
	p, err := peek(br, 4)
	if err != nil {
		return err
	}
	count := le.Uint32(p)
	br.Discard(4)
	if untouched && count > 0 {
		return fmt.Errorf("%d pairs in a shard never touched", count)
	}
	idx := -1
	if age < int64(l.ring.n) {
		idx = (l.ring.head - int(age) + l.ring.n) % l.ring.n
	}
	for i := range count {
		e, err := peekEntry(br)
		if err != nil {
			return fmt.Errorf("pair %d of %d: %w", i, count, err)
		}
		if idx >= 0 {
			j := maphash.Bytes(l.seed, e[2:]) % exactShards
			l.keys[j][idx] = appendDoubling(l.keys[j][idx], e)
			l.counts[j][idx]++
		}
		br.Discard(len(e))
	}
	return nil
}

// build returns shard i's generations and their estimated bytes, each map
// made at its size: nil for an empty generation, as advanceLocked leaves
// it. A generation's keys share one string, one allocation instead of one
// per key; they are dropped together, with their generation. The estimate
// stays keyBytes, as for pairs counted live, so Bytes survives a round
// trip (it overstates the shared keys a little). It releases the keys it has filed.
func (l *exactLoad) build(i int) ([]map[string]struct{}, []int, error) {
	gens, bytes := make([]map[string]struct{}, l.ring.n), make([]int, l.ring.n)
	for g, n := range l.counts[i] {
		if n == 0 {
			continue
		}
		gens[g] = make(map[string]struct{}, n)
		for s := string(l.keys[i][g]); len(s) > 0; {
			kl := int(s[0]) | int(s[1])<<8
			gens[g][s[2:2+kl]] = struct{}{}
			bytes[g] += keyBytes(kl)
			s = s[2+kl:]
		}
		if len(gens[g]) != n {
			return nil, nil, fmt.Errorf("sketch: pairs are in the state twice (%d repeats)", n-len(gens[g]))
		}
		l.keys[i][g] = nil
	}
	return gens, bytes, nil
}

// appendDoubling appends e to a, at least doubling a's capacity when it
// is full: append grows large slices by only 1.25×, copying each byte of a
// generation several times over.
func appendDoubling(a, e []byte) []byte {
	if len(a)+len(e) > cap(a) {
		a = slices.Grow(a, max(len(e), len(a), 256))
	}
	return append(a, e...)
}

// peekEntry returns the next entry of br, a pair key and its length before
// it, valid until the next read of br; the caller discards it. The key must
// hold pairKey's campaign length and campaign.
func peekEntry(br *bufio.Reader) ([]byte, error) {
	p, err := peek(br, 2)
	if err != nil {
		return nil, err
	}
	n := int(le.Uint16(p))
	if p, err = peek(br, 2+n); err != nil {
		return nil, err
	}
	if n >= 2 && int(le.Uint16(p[2:])) <= n-2 {
		return p, nil
	}
	return nil, fmt.Errorf("malformed pair key of %d bytes", n)
}

func peek(br *bufio.Reader, n int) ([]byte, error) {
	p, err := br.Peek(n)
	if err != nil {
		return nil, short(err)
	}
	return p, nil
}

// layout is a state's header: the shape a window must have to load it.
type layout struct {
	kind   byte
	slice  int64
	gens   uint32
	shards uint32
	m      uint64 // Bloom only
	k      uint32 // Bloom only
}

func (l layout) size() int {
	if l.kind == kindBloom {
		return 1 + 8 + 4 + 4 + 8 + 4
	}
	return 1 + 8 + 4 + 4
}

func (l layout) append(b []byte) []byte {
	b = append(b, l.kind)
	b = le.AppendUint64(b, uint64(l.slice))
	b = le.AppendUint32(b, l.gens)
	b = le.AppendUint32(b, l.shards)
	if l.kind == kindBloom {
		b = le.AppendUint64(b, l.m)
		b = le.AppendUint32(b, l.k)
	}
	return b
}

// check reads a header from r and compares it with l, the receiver's.
func (l layout) check(r io.Reader) error {
	buf := make([]byte, l.size())
	if _, err := io.ReadFull(r, buf[:1]); err != nil {
		return fmt.Errorf("sketch: cannot read the state header: %w", short(err))
	}
	if buf[0] != l.kind {
		return kindError(buf[0], l.kind)
	}
	if _, err := io.ReadFull(r, buf[1:]); err != nil {
		return fmt.Errorf("sketch: cannot read the state header: %w", short(err))
	}
	got := layout{kind: buf[0], slice: int64(le.Uint64(buf[1:])), gens: le.Uint32(buf[9:]), shards: le.Uint32(buf[13:])}
	if got.kind == kindBloom {
		got.m, got.k = le.Uint64(buf[17:]), le.Uint32(buf[25:])
	}
	return got.diff(l)
}

// diff reports the first field where the state's layout l differs from
// the window's, state's value first.
func (l layout) diff(want layout) error {
	for _, f := range []struct {
		name      string
		got, want any
	}{
		{"slice", time.Duration(l.slice), time.Duration(want.slice)},
		{"generations", l.gens, want.gens},
		{"shards", l.shards, want.shards},
		{"m", l.m, want.m},
		{"k", l.k, want.k},
	} {
		if f.got != f.want {
			return fmt.Errorf("%w: %s %v vs %v", ErrLayoutMismatch, f.name, f.got, f.want)
		}
	}
	return nil
}

func kindError(got, want byte) error {
	mode := map[byte]string{kindBloom: "bloom", kindBloomV1: "bloom (unblocked filters, written by an earlier version)", kindBloomV2: "bloom (one filter per slice, written by an earlier version)", kindExact: "exact"}
	if mode[got] == "" {
		return fmt.Errorf("sketch: not a dedup window state: kind byte %#02x", got)
	}
	return fmt.Errorf("%w: mode %s vs %s", ErrLayoutMismatch, mode[got], mode[want])
}

func appendRing(b []byte, r ring) []byte {
	b = le.AppendUint64(b, uint64(r.epoch))
	return le.AppendUint32(b, uint32(r.head))
}

// decodeRing decodes a ring of n generations from appendRing's bytes and
// checks it: head within the ring, epoch noEpoch or one of a real time.
func (c clock) decodeRing(b []byte, n int) (ring, error) {
	epoch, head := int64(le.Uint64(b)), le.Uint32(b[8:])
	if uint64(head) >= uint64(n) {
		return ring{}, fmt.Errorf("ring head %d out of %d generations", head, n)
	}
	if epoch != noEpoch && (epoch < math.MinInt64/c.slice-1 || epoch > math.MaxInt64/c.slice) {
		return ring{}, fmt.Errorf("epoch %d is no time's slice", epoch)
	}
	return ring{epoch: epoch, head: int(head), n: n}, nil
}

// countingReader counts the bytes read from r, for ReadFrom's result.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// expectEOF checks that r ends where the state does.
func expectEOF(r io.Reader) error {
	var b [1]byte
	n, err := io.ReadFull(r, b[:])
	switch {
	case n > 0:
		return errors.New("sketch: unexpected data after the state")
	case err == io.EOF:
		return nil
	}
	return fmt.Errorf("sketch: cannot read the end of the state: %w", err)
}

// short turns io.EOF into io.ErrUnexpectedEOF: inside a state, the end of
// the stream means truncation.
func short(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
