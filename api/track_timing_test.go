package api

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/impressiond/impressiond/sketch"
)

// newBenchServer returns a Server with one campaign and its handler, to be
// called directly: the benchmark measures the handler, not the network.
func newBenchServer(b testing.TB, mode string, opts ...func(*Options)) (*Server, fasthttp.RequestHandler) {
	b.Helper()
	d, err := sketch.New(mode, sketch.Options{TTL: time.Hour, Slices: 6, Capacity: 10_000_000, FalsePositiveRate: 0.001})
	if err != nil {
		b.Fatal(err)
	}
	o := Options{Dedup: d, MaxSkew: time.Minute}
	for _, f := range opts {
		f(&o)
	}
	srv, err := New(o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	h := srv.Handler()
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("POST")
	ctx.Request.SetRequestURI("/api/v1/campaigns")
	ctx.Request.SetBodyString(`{"id":"bench","name":"Bench","start_time":"2020-01-01T00:00:00Z"}`)
	h(&ctx)
	if ctx.Response.StatusCode() != 201 {
		b.Fatalf("create campaign: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	return srv, h
}

// trackBodies are single-impression bodies over 1<<16 users: the first lap
// counts, later laps are duplicates.
func trackBodies(withTimestamp bool) [][]byte {
	bodies := make([][]byte, 1<<16)
	ts := time.Now().Add(-30 * time.Minute).UTC().Format(time.RFC3339)
	for i := range bodies {
		if withTimestamp {
			bodies[i] = fmt.Appendf(nil, `{"campaign_id":"bench","user_id":"user-%d","ad_id":"ad-7","timestamp":%q}`, i, ts)
		} else {
			bodies[i] = fmt.Appendf(nil, `{"campaign_id":"bench","user_id":"user-%d"}`, i)
		}
	}
	return bodies
}

func BenchmarkTrackHandler(b *testing.B) {
	for _, mode := range []string{"bloom", "exact"} {
		for _, withTS := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/timestamp=%v", mode, withTS), func(b *testing.B) {
				_, h := newBenchServer(b, mode)
				bodies := trackBodies(withTS)
				var seq atomic.Uint64
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					var ctx fasthttp.RequestCtx
					ctx.Request.Header.SetMethod("POST")
					ctx.Request.SetRequestURI("/api/v1/impressions")
					i := seq.Add(1) * 7919
					for pb.Next() {
						ctx.Request.SetBodyRaw(bodies[i%uint64(len(bodies))])
						ctx.Response.Reset()
						h(&ctx)
						if ctx.Response.StatusCode() != 200 {
							b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
						}
						i++
					}
				})
			})
		}
	}
}

func BenchmarkBatchHandler(b *testing.B) {
	const size = 1000
	_, h := newBenchServer(b, "bloom")
	bodies := trackBodies(true)
	batches := make([][]byte, 64)
	for j := range batches {
		var sb strings.Builder
		sb.WriteByte('[')
		for i := 0; i < size; i++ {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.Write(bodies[(j*size+i)%len(bodies)])
		}
		sb.WriteByte(']')
		batches[j] = []byte(sb.String())
	}
	var seq atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod("POST")
		ctx.Request.SetRequestURI("/api/v1/impressions/batch")
		i := seq.Add(1)
		for pb.Next() {
			ctx.Request.SetBodyRaw(batches[i%uint64(len(batches))])
			ctx.Response.Reset()
			h(&ctx)
			if ctx.Response.StatusCode() != 200 {
				b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)*size/b.Elapsed().Seconds(), "impressions/s")
}
