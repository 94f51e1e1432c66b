package sketch

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// benchFreqKinds are the counters benchmarked: the exact one, and a sketch
// sized for 100,000 pairs a day (372 MB).
var benchFreqKinds = []struct {
	name string
	make func() Frequency
}{
	{"exact", func() Frequency { return NewFrequencyExact() }},
	{"sketch", func() Frequency { return NewFrequencySketch(100_000) }},
}

// BenchmarkFrequencyAdd measures one exposure on every core: 100,000
// pairs, each goroutine walking them in its own order, the clock moving a
// second every 1,024 adds, so the exact counter mostly finds the pair's
// current minute and now and then starts a cell, and the sketch crosses
// slices at every level.
func BenchmarkFrequencyAdd(b *testing.B) {
	const pairs = 100_000
	for _, k := range benchFreqKinds {
		b.Run(k.name, func(b *testing.B) {
			f := k.make()
			for i := range pairs {
				f.Add(fkey(i), freqBase)
			}
			var seq atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				g := seq.Add(1)
				for i := 0; pb.Next(); i++ {
					f.Add(fkey(int((int64(i)*7919+g*104729)%pairs)), freqBase.Add(time.Duration(i>>10)*time.Second))
				}
			})
		})
	}
}

// BenchmarkFrequencyCount measures one Count of a 1-hour and a 24-hour
// window on every core, over 100,000 pairs exposed every 40 minutes on
// average for two days (about 72 exposures each).
func BenchmarkFrequencyCount(b *testing.B) {
	const pairs = 100_000
	now := freqBase.Add(48 * time.Hour)
	for _, k := range benchFreqKinds {
		f := k.make()
		for m := range 48 * 60 / 40 {
			for p := range pairs {
				f.Add(fkey(p), freqBase.Add(time.Duration(m)*40*time.Minute+time.Duration(p%2400)*time.Second))
			}
		}
		for _, w := range []time.Duration{time.Hour, 24 * time.Hour} {
			b.Run(fmt.Sprintf("%s/w=%v", k.name, w), func(b *testing.B) {
				var seq atomic.Int64
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					g := seq.Add(1)
					var sink uint64
					for i := 0; pb.Next(); i++ {
						sink += f.Count(fkey(int((int64(i)*7919+g*104729)%pairs)), w, now)
					}
					_ = sink
				})
			})
		}
	}
}
