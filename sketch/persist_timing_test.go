package sketch

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// BenchmarkWriteTo measures a snapshot of a full window into memory: Bloom
// at the default Options (10M pairs, p=0.001), Exact holding 1M pairs.
func BenchmarkWriteTo(b *testing.B) {
	for _, tc := range persistBenches(b, false) {
		b.Run(tc.name, func(b *testing.B) {
			var buf bytes.Buffer
			buf.Grow(len(tc.state))
			b.SetBytes(int64(len(tc.state)))
			b.ReportAllocs()
			for b.Loop() {
				buf.Reset()
				if _, err := tc.d.WriteTo(&buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReadFrom measures restoring those windows at start-up, and
// Exact with 10M pairs, the default capacity, unless -short.
func BenchmarkReadFrom(b *testing.B) {
	for _, tc := range persistBenches(b, !testing.Short()) {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(tc.state)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tc.d.ReadFrom(bytes.NewReader(tc.state)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type persistBench struct {
	name  string
	d     Deduper
	state []byte
}

// persistBenches returns the benchmarked windows, each loaded with its
// state.
func persistBenches(b *testing.B, tenMillion bool) []persistBench {
	bl, err := NewBloom(Options{})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 1 << 20 { // the bits' values do not change the cost
		bl.TestAndAddKey(Key{Lo: uint64(i) * 0x9e3779b97f4a7c15, Hi: uint64(i)}, benchStart)
	}
	var buf bytes.Buffer
	if _, err := bl.WriteTo(&buf); err != nil {
		b.Fatal(err)
	}
	benches := []persistBench{{"bloom", bl, buf.Bytes()}}
	sizes := []int{1_000_000}
	if tenMillion {
		sizes = append(sizes, 10_000_000)
	}
	for _, n := range sizes {
		x, err := NewExact(Options{})
		if err != nil {
			b.Fatal(err)
		}
		state := exactState(n, x.Generations(), x.clock.epoch(benchStart))
		if _, err := x.ReadFrom(bytes.NewReader(state)); err != nil {
			b.Fatal(err)
		}
		benches = append(benches, persistBench{fmt.Sprintf("exact-%dM", n/1_000_000), x, state})
	}
	return benches
}

// exactState encodes an Exact state of n distinct pairs spread evenly over
// every shard and generation, all shards at epoch e, without building the
// maps: ReadFrom re-shards the pairs anyway.
func exactState(n, gens int, e int64) []byte {
	x := Exact{clock: clock{slice: int64(time.Hour / time.Duration(gens-1))}, opts: Options{Slices: gens - 1}}
	b := x.layout().append(make([]byte, 0, n*32))
	per := n / (exactShards * gens)
	i := 0
	var c, u, k []byte
	for s := range exactShards {
		b = appendRing(b, ring{epoch: e, head: s % gens})
		for g := range gens {
			cnt := per
			if s == exactShards-1 && g == gens-1 {
				cnt = n - i
			}
			b = le.AppendUint32(b, uint32(cnt))
			for range cnt {
				c = fmt.Appendf(c[:0], "campaign-%d", i%100)
				u = fmt.Appendf(u[:0], "user-%08d", i)
				k = pairKey(k[:0], c, u)
				b = le.AppendUint16(b, uint16(len(k)))
				b = append(b, k...)
				i++
			}
		}
	}
	return b
}
