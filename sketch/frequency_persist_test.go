package sketch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// freqState returns f's state.
func freqState(t testing.TB, f Frequency) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := f.WriteTo(&buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("WriteTo: %d bytes of %d, %v", n, buf.Len(), err)
	}
	return buf.Bytes()
}

// filledFreq replays a random history of 40 keys over eight days into f
// and returns the keys and the latest time.
func filledFreq(f Frequency, seed uint64) ([]uint64, time.Time) {
	r := rand.New(rand.NewPCG(seed, 11))
	keys := randomKeys(r, 40)
	var latest time.Time
	for _, e := range randomHistory(r, keys, 4000, 190*time.Hour) {
		if e.advance {
			f.Advance(e.at)
		} else {
			f.Add(e.key, e.at)
		}
		latest = e.at
	}
	return keys, latest
}

// freqCanon is an exact counter's pairs, sorted: its state up to map order.
func freqCanon(x *FrequencyExact) string {
	var lines []string
	for i := range x.shards {
		for k, c := range x.shards[i].pairs {
			lines = append(lines, fmt.Sprintf("%x:%v", k, c))
		}
	}
	slices.Sort(lines)
	return fmt.Sprint(x.latest.Load(), lines)
}

// tinyFreqKinds are small receivers for fuzzing and damage tests.
var tinyFreqKinds = []struct {
	name string
	make func() Frequency
}{
	{"exact", func() Frequency { return NewFrequencyExact() }},
	{"sketch", func() Frequency { return newFrequencySketch(1, freqParams{depth: 4, blocksPerPair: 1.0 / 64}) }},
}

// TestFrequencyPersistRoundTrip writes a filled counter and reads it into
// a fresh one: every Count is the same, and so is the state written again
// (the exact counter's up to the order of its pairs).
func TestFrequencyPersistRoundTrip(t *testing.T) {
	for _, k := range append(freqKinds[:0:0], freqKinds...) {
		t.Run(k.name, func(t *testing.T) {
			f := k.make()
			keys, latest := filledFreq(f, 1)
			st := freqState(t, f)
			g := k.make()
			if n, err := g.ReadFrom(bytes.NewReader(st)); err != nil || n != int64(len(st)) {
				t.Fatalf("ReadFrom: %d of %d bytes, %v", n, len(st), err)
			}
			r := rand.New(rand.NewPCG(2, 3))
			for range 5000 {
				key, w := keys[r.IntN(len(keys))], randomWindow(r)
				now := latest.Add(-time.Duration(r.Int64N(int64(200 * time.Hour))))
				if a, b := f.Count(key, w, now), g.Count(key, w, now); a != b {
					t.Fatalf("Count(%#x, %v, %v): %d written, %d read back", key, w, now, a, b)
				}
			}
			if x, ok := f.(*FrequencyExact); ok {
				if freqCanon(x) != freqCanon(g.(*FrequencyExact)) {
					t.Fatal("exact pairs differ after a round trip")
				}
				// Read back, maps and cell lists are made at their size.
				if g.Bytes() > f.Bytes() || g.Bytes() < f.Bytes()/2 {
					t.Errorf("Bytes %d read back, %d written", g.Bytes(), f.Bytes())
				}
			} else if !bytes.Equal(freqState(t, g), st) {
				t.Fatal("sketch state changed through ReadFrom and WriteTo")
			}
		})
	}
}

// withCRC returns p with a correct checksum in place of its last 4 bytes:
// a state damaged on purpose past the checksum, to reach the checks behind.
func withCRC(p []byte) []byte {
	p = slices.Clone(p[:len(p)-4])
	return binary.LittleEndian.AppendUint32(p, crc32.Checksum(p, freqCRC))
}

// TestFrequencyPersistRejectsDamage feeds damaged states: truncated at
// every length, a flipped bit anywhere, a byte after the end, another
// version or magic. Each is an error, and the receiver is left empty.
func TestFrequencyPersistRejectsDamage(t *testing.T) {
	for _, k := range tinyFreqKinds {
		t.Run(k.name, func(t *testing.T) {
			src := k.make()
			keys, latest := filledFreq(src, 4)
			st := freqState(t, src)
			check := func(what string, data []byte) {
				t.Helper()
				f := k.make()
				if _, err := f.ReadFrom(bytes.NewReader(data)); err == nil {
					t.Fatalf("%s: accepted", what)
				}
				for _, key := range keys {
					if n := f.Count(key, MaxFrequencyWindow, latest); n != 0 {
						t.Fatalf("%s: the rejected state left counts (%d)", what, n)
					}
				}
			}
			for n := 0; n < len(st); n += 1 + n/64 {
				check(fmt.Sprintf("truncated to %d of %d bytes", n, len(st)), st[:n])
			}
			r := rand.New(rand.NewPCG(5, 5))
			for range 300 {
				d := slices.Clone(st)
				i := r.IntN(len(d))
				d[i] ^= 1 << r.IntN(8)
				check(fmt.Sprintf("bit flipped in byte %d", i), d)
			}
			check("a byte after the end", append(slices.Clone(st), 0))
			bad := slices.Clone(st)
			bad[2] = freqVersion + 1
			check("version 2", withCRC(bad))
			bad[0], bad[2] = 'P', freqVersion
			check("a dedup window's magic", withCRC(bad))
		})
	}
}

// TestFrequencyPersistRejectsMismatch reads states into receivers of
// another kind or other parameters: errors wrapping ErrLayoutMismatch.
func TestFrequencyPersistRejectsMismatch(t *testing.T) {
	exactState := freqState(t, NewFrequencyExact())
	sketchState := freqState(t, tinySketch())
	for _, tc := range []struct {
		name  string
		state []byte
		into  Frequency
	}{
		{"exact into sketch", exactState, tinySketch()},
		{"sketch into exact", sketchState, NewFrequencyExact()},
		{"sketch into another capacity", sketchState, newFrequencySketch(2000, freqParams{depth: 4, blocksPerPair: 0.05})},
		{"sketch into another depth", sketchState, newFrequencySketch(1, freqParams{depth: 3, blocksPerPair: 0.05})},
		{"sketch into more blocks", sketchState, newFrequencySketch(1, freqParams{depth: 4, blocksPerPair: 0.06})},
	} {
		if _, err := tc.into.ReadFrom(bytes.NewReader(tc.state)); !errors.Is(err, ErrLayoutMismatch) {
			t.Errorf("%s: got %v, want an error wrapping ErrLayoutMismatch", tc.name, err)
		}
	}
}

// TestFrequencyPersistRejectsBadContent crafts states with a correct
// checksum but content no counter writes: each is an error.
func TestFrequencyPersistRejectsBadContent(t *testing.T) {
	// An exact state of one pair in shard 0, cells given as (start, n).
	exact := func(key uint64, cells ...[2]uint64) []byte {
		b := freqHeader(freqKindExact)
		b = le.AppendUint64(b, uint64(freqBase.Unix()))
		b = le.AppendUint32(b, freqShards)
		for s := range uint64(freqShards) {
			if s != key%freqShards {
				b = le.AppendUint32(b, 0)
				continue
			}
			b = le.AppendUint32(b, 1)
			b = le.AppendUint64(b, key)
			b = binary.AppendUvarint(b, uint64(len(cells)))
			for i, c := range cells {
				if i == 0 {
					b = binary.AppendVarint(b, int64(c[0]))
				} else {
					b = binary.AppendUvarint(b, c[0])
				}
				b = binary.AppendUvarint(b, c[1])
			}
		}
		return withCRC(append(b, 0, 0, 0, 0))
	}
	m := uint64(freqBase.Unix() / 60)
	lvl := func(l int, n uint64) uint64 { return uint64(l)<<freqCountBits | n }
	for _, tc := range []struct {
		name  string
		state []byte
	}{
		{"no cells", exact(64)},
		{"a cell of no exposure", exact(64, [2]uint64{m, 0})},
		{"overlapping cells", exact(64, [2]uint64{m, lvl(1, 1)}, [2]uint64{5, 1})},
		{"the same minute twice", exact(64, [2]uint64{m, 1}, [2]uint64{0, 1})},
		{"a misaligned 10m cell", exact(64, [2]uint64{m, 1}, [2]uint64{1, lvl(1, 2)})},
		{"a misaligned 6h cell", exact(64, [2]uint64{m + 60, lvl(3, 1)})},
		{"n beyond 32 bits", exact(64, [2]uint64{m, 1 << 33})},
		{"a minute beyond 32 bits", exact(64, [2]uint64{1 << 40, 1})},
		{"a pair in the wrong shard", func() []byte {
			b := exact(64, [2]uint64{m, 1})
			p := len(freqHeader(freqKindExact)) + 12 + 4 // shard 0's pair key
			le.PutUint64(b[p:], 65)
			return withCRC(b)
		}()},
	} {
		_, err := NewFrequencyExact().ReadFrom(bytes.NewReader(tc.state))
		if !errors.Is(err, errFreqData) {
			t.Errorf("%s: got %v, want errFreqData", tc.name, err)
		}
	}
	if _, err := NewFrequencyExact().ReadFrom(bytes.NewReader(exact(64, [2]uint64{m, 1}, [2]uint64{1, 3}))); err != nil {
		t.Fatalf("a sound crafted state refused: %v", err)
	}
	tooMany := make([][2]uint64, freqMaxCells+1)
	for i := range tooMany {
		tooMany[i] = [2]uint64{1, 1}
	}
	tooMany[0][0] = m
	if _, err := NewFrequencyExact().ReadFrom(bytes.NewReader(exact(64, tooMany...))); !errors.Is(err, errFreqData) {
		t.Errorf("%d cells: got %v, want errFreqData", len(tooMany), err)
	}

	st := freqState(t, tinySketch())
	tags := len(tinySketch().layout())
	for _, tc := range []struct {
		name string
		edit func(b []byte)
	}{
		{"a tag of another slot", func(b []byte) { le.PutUint64(b[tags:], 1) }},
		{"counts in a slot that held no slice", func(b []byte) { b[tags+8*63+1] = 1 }},
	} {
		d := slices.Clone(st)
		tc.edit(d)
		if _, err := tinySketch().ReadFrom(bytes.NewReader(withCRC(d))); !errors.Is(err, errFreqData) {
			t.Errorf("sketch, %s: got %v, want errFreqData", tc.name, err)
		}
	}
}

// TestFrequencyWriteToDuringAdds writes states while four goroutines add
// into a fresh counter, whose slots and pairs appear as it is written:
// every state reads back.
func TestFrequencyWriteToDuringAdds(t *testing.T) {
	for _, k := range tinyFreqKinds {
		t.Run(k.name, func(t *testing.T) {
			f := k.make()
			var wg sync.WaitGroup
			stop := make(chan struct{})
			for wk := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						f.Add(fkey(wk<<20|i%300), freqBase.Add(time.Duration(i)*7*time.Second))
					}
				}()
			}
			for range 20 {
				if _, err := k.make().ReadFrom(bytes.NewReader(freqState(t, f))); err != nil {
					t.Errorf("a state written during adds does not read back: %v", err)
				}
			}
			close(stop)
			wg.Wait()
		})
	}
}

type failingWriter struct{ after int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.after < len(p) {
		n := w.after
		w.after = 0
		return n, io.ErrShortWrite
	}
	w.after -= len(p)
	return len(p), nil
}

// TestFrequencyWriteToReportsErrors checks a failing writer's error is
// returned, with the bytes it took.
func TestFrequencyWriteToReportsErrors(t *testing.T) {
	for _, k := range tinyFreqKinds {
		f := k.make()
		filledFreq(f, 6)
		n, err := f.WriteTo(&failingWriter{after: 100})
		if !errors.Is(err, io.ErrShortWrite) || n != 100 {
			t.Errorf("%s: WriteTo = %d, %v; want 100, io.ErrShortWrite", k.name, n, err)
		}
	}
}

// FuzzFrequencyReadFrom checks ReadFrom on arbitrary input, as given and
// with a correct checksum put in its last 4 bytes: no panic, a rejected
// state leaves the receiver empty, and an accepted one writes out and
// reads back the same. States are kilobytes, so minimizing one takes
// long: fuzz with -fuzzminimizetime 2s.
func FuzzFrequencyReadFrom(f *testing.F) {
	for _, k := range tinyFreqKinds {
		src := k.make()
		filledFreq(src, 7)
		st := freqState(f, src)
		f.Add(st)
		f.Add(st[:len(st)/2])
		f.Add(freqState(f, k.make()))
	}
	f.Add([]byte{})
	f.Add([]byte("fx\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		inputs := [][]byte{data}
		if len(data) >= 4 {
			inputs = append(inputs, withCRC(data))
		}
		for _, in := range inputs {
			for _, k := range tinyFreqKinds {
				g := k.make()
				if _, err := g.ReadFrom(bytes.NewReader(in)); err != nil {
					if !bytes.Equal(freqState(t, g), freqState(t, k.make())) {
						t.Fatalf("%s: a rejected state (%v) left the receiver non-empty", k.name, err)
					}
					continue
				}
				again := k.make()
				if _, err := again.ReadFrom(bytes.NewReader(freqState(t, g))); err != nil {
					t.Fatalf("%s: a state ReadFrom accepted does not read back: %v", k.name, err)
				}
				if x, ok := g.(*FrequencyExact); ok {
					if freqCanon(x) != freqCanon(again.(*FrequencyExact)) {
						t.Fatalf("exact: state changed through WriteTo and ReadFrom")
					}
				} else if !bytes.Equal(freqState(t, again), in) {
					t.Fatalf("sketch: state changed through ReadFrom and WriteTo")
				}
			}
		}
	})
}
