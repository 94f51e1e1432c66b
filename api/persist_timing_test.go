package api

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// BenchmarkTrackDurable measures single-impression ingest through the
// handler with persistence off, with the default 1s fsync interval, and with
// fsync 0 (every answer waits for its group commit). Every impression is a
// new pair, so every one is counted and logged. fsync 0 runs 64 goroutines
// per CPU: its throughput is group size × fsyncs per second, and that needs
// concurrent requests to share commits, as they do on a loaded server.
func BenchmarkTrackDurable(b *testing.B) {
	for _, c := range []struct {
		name  string
		dir   bool
		fsync time.Duration
	}{
		{"off", false, 0},
		{"fsync=1s", true, time.Second},
		{"fsync=0", true, 0},
	} {
		b.Run(c.name, func(b *testing.B) {
			_, h := newBenchServer(b, "bloom", func(o *testOptions) {
				if c.dir {
					o.DataDir = b.TempDir()
					o.FsyncInterval = c.fsync
				}
			})
			if c.dir && c.fsync == 0 {
				b.SetParallelism(64)
			}
			var seq atomic.Uint64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var ctx fasthttp.RequestCtx
				ctx.Request.Header.SetMethod("POST")
				ctx.Request.SetRequestURI("/api/v1/impressions")
				base := seq.Add(1) << 40
				body := make([]byte, 0, 128)
				for i := base; pb.Next(); i++ {
					body = append(body[:0], `{"campaign_id":"bench","user_id":"u`...)
					body = strconv.AppendUint(body, i, 10)
					body = append(body, `"}`...)
					ctx.Request.SetBodyRaw(body)
					ctx.Response.Reset()
					h(&ctx)
					if ctx.Response.StatusCode() != 200 {
						b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
					}
				}
			})
		})
	}
}
