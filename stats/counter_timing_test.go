package stats

import "testing"

func BenchmarkCounterAdd(b *testing.B) {
	b.Run("one-minute", func(b *testing.B) {
		var c Counter
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c.Add(base, base)
			}
		})
	})
	b.Run("spread-2h", func(b *testing.B) {
		var c Counter
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := int64(0)
			for pb.Next() {
				c.Add(base-i%120, base)
				i++
			}
		})
	})
}

func BenchmarkCounterRead(b *testing.B) {
	var c Counter
	for i := int64(0); i < Minutes; i++ {
		c.Add(base-i, base)
	}
	b.ReportAllocs()
	for b.Loop() {
		c.Read(base)
	}
}
