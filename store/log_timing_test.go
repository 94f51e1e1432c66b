package store

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkAppend measures one impression record per Append: with the 1s
// interval (queued, written by the writer) and with 0 (each Append waits
// for the fsync of its group commit; 64 appenders per CPU share commits).
func BenchmarkAppend(b *testing.B) {
	for _, interval := range []time.Duration{time.Second, 0} {
		b.Run(fmt.Sprintf("fsync=%v", interval), func(b *testing.B) {
			d, err := OpenDir(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			l, err := OpenLog(d, 1, Options{FsyncInterval: interval})
			if err != nil {
				b.Fatal(err)
			}
			if interval == 0 {
				b.SetParallelism(64)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var batch Batch
				var i uint64
				for pb.Next() {
					batch.Reset()
					batch.AddImpression(1, t0, 0, i, i, nil, nil)
					if err := l.Append(&batch); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
			b.StopTimer()
			if err := l.Close(); err != nil {
				b.Fatal(err)
			}
			st := l.Stats()
			b.ReportMetric(float64(st.Records)/float64(max(st.Fsyncs, 1)), "records/fsync")
		})
	}
}
