package api

import (
	"bytes"
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
// benchFrequencyCapacity is cmd/impressiond's -frequency-capacity default.
const benchFrequencyCapacity = 20_000

func newBenchServer(b testing.TB, mode string, opts ...func(*testOptions)) (*Server, fasthttp.RequestHandler) {
	b.Helper()
	d, err := sketch.New(mode, sketch.Options{TTL: time.Hour, Slices: 6, Capacity: 10_000_000, FalsePositiveRate: 0.001})
	if err != nil {
		b.Fatal(err)
	}
	// The frequency window of the default flags: the hot path pays for
	// recording every exposure as the binary does.
	o := testOptions{coreOptions: coreOptions{Dedup: d, Frequency: testFrequency(mode, benchFrequencyCapacity), MaxSkew: time.Minute}}
	for _, f := range opts {
		f(&o)
	}
	srv, err := newServer(o)
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
	for i := range bodies {
		bodies[i] = trackBody(withTimestamp, fmt.Sprintf("user-%d", i))
	}
	return bodies
}

func trackBody(withTimestamp bool, user string) []byte {
	if withTimestamp {
		ts := time.Now().Add(-30 * time.Minute).UTC().Format(time.RFC3339)
		return fmt.Appendf(nil, `{"campaign_id":"bench","user_id":%q,"ad_id":"ad-7","timestamp":%q}`, user, ts)
	}
	return fmt.Appendf(nil, `{"campaign_id":"bench","user_id":%q}`, user)
}

// odometer is a body holding decimal counters of fixed width, one per
// impression, that next advances in place: each call turns every user id
// of the body into one never sent before, without allocating, at the cost
// of about one byte store per impression.
type odometer struct {
	body []byte
	ends []int // one past the last digit of each counter
}

// counterDigits is wide enough for any b.N.
const counterDigits = 12

// newOdometer builds a body from items, each made by item(k, digits) from
// its index and a placeholder of counterDigits zeros.
func newOdometer(items int, item func(k int, digits string) []byte) *odometer {
	o := &odometer{}
	zeros := strings.Repeat("0", counterDigits)
	if items > 1 {
		o.body = append(o.body, '[')
	}
	for k := range items {
		if k > 0 {
			o.body = append(o.body, ',')
		}
		it := item(k, zeros)
		o.ends = append(o.ends, len(o.body)+strings.Index(string(it), zeros)+counterDigits)
		o.body = append(o.body, it...)
	}
	if items > 1 {
		o.body = append(o.body, ']')
	}
	return o
}

func (o *odometer) next() {
	for _, end := range o.ends {
		for i := end - 1; ; i-- {
			if o.body[i] != '9' {
				o.body[i]++
				break
			}
			o.body[i] = '0'
		}
	}
}

// BenchmarkTrackHandler measures the single-impression handler, called
// directly, in two workloads measured apart: fresh, where every impression
// is a pair never sent before (what counts, and fills the window), and
// repeat, where every impression repeats one of 65,536 pairs counted before
// the timer starts (a duplicate found in the newest sub-filter).
func BenchmarkTrackHandler(b *testing.B) {
	for _, mode := range []string{"bloom", "exact"} {
		for _, withTS := range []bool{false, true} {
			name := fmt.Sprintf("%s/timestamp=%v", mode, withTS)
			b.Run(name+"/fresh", func(b *testing.B) {
				_, h := newBenchServer(b, mode)
				var seq atomic.Uint64
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					g := seq.Add(1)
					o := newOdometer(1, func(_ int, digits string) []byte {
						return trackBody(withTS, fmt.Sprintf("g%d-%s", g, digits))
					})
					var ctx fasthttp.RequestCtx
					ctx.Request.Header.SetMethod("POST")
					ctx.Request.SetRequestURI("/api/v1/impressions")
					for pb.Next() {
						o.next()
						ctx.Request.SetBodyRaw(o.body)
						ctx.Response.Reset()
						h(&ctx)
						// A Bloom window may take a fresh pair for a repeat
						// (its false-positive rate); exact never does.
						if ctx.Response.StatusCode() != 200 || (mode == "exact" && !bytes.Equal(ctx.Response.Body(), bodyCounted)) {
							b.Fatalf("fresh pair: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
						}
					}
				})
			})
			b.Run(name+"/repeat", func(b *testing.B) {
				_, h := newBenchServer(b, mode)
				bodies := trackBodies(withTS)
				var ctx fasthttp.RequestCtx
				ctx.Request.Header.SetMethod("POST")
				ctx.Request.SetRequestURI("/api/v1/impressions")
				for _, body := range bodies {
					ctx.Request.SetBodyRaw(body)
					ctx.Response.Reset()
					h(&ctx)
				}
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
						if ctx.Response.StatusCode() != 200 || !bytes.Equal(ctx.Response.Body(), bodyDuplicate) {
							b.Fatalf("repeat: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
						}
						i++
					}
				})
			})
		}
	}
}

// BenchmarkBatchHandler measures batches of 1000 impressions with
// timestamps, in Bloom mode: fresh, every impression a pair never sent
// before; repeat, every impression one of 64,000 pairs counted before the
// timer starts.
func BenchmarkBatchHandler(b *testing.B) {
	const size = 1000
	call := func(b *testing.B, h fasthttp.RequestHandler, ctx *fasthttp.RequestCtx, body []byte, want string) {
		ctx.Request.SetBodyRaw(body)
		ctx.Response.Reset()
		h(ctx)
		if ctx.Response.StatusCode() != 200 || !bytes.Contains(ctx.Response.Body(), []byte(want)) {
			b.Fatalf("batch: %d %s, want %s", ctx.Response.StatusCode(), ctx.Response.Body(), want)
		}
	}
	b.Run("fresh", func(b *testing.B) {
		_, h := newBenchServer(b, "bloom")
		var seq atomic.Uint64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			g := seq.Add(1)
			o := newOdometer(size, func(k int, digits string) []byte {
				return trackBody(true, fmt.Sprintf("g%d-%d-%s", g, k, digits))
			})
			var ctx fasthttp.RequestCtx
			ctx.Request.Header.SetMethod("POST")
			ctx.Request.SetRequestURI("/api/v1/impressions/batch")
			for pb.Next() {
				o.next()
				// A few fresh pairs may be false positives.
				call(b, h, &ctx, o.body, `"rejected":0,`)
			}
		})
		b.ReportMetric(float64(b.N)*size/b.Elapsed().Seconds(), "impressions/s")
	})
	b.Run("repeat", func(b *testing.B) {
		_, h := newBenchServer(b, "bloom")
		bodies := trackBodies(true)
		batches := make([][]byte, 64)
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod("POST")
		ctx.Request.SetRequestURI("/api/v1/impressions/batch")
		for j := range batches {
			batches[j] = newOdometer(size, func(k int, _ string) []byte { return bodies[j*size+k] }).body
			call(b, h, &ctx, batches[j], `"rejected":0,`)
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
				call(b, h, &ctx, batches[i%uint64(len(batches))], `"duplicates":1000,`)
				i++
			}
		})
		b.ReportMetric(float64(b.N)*size/b.Elapsed().Seconds(), "impressions/s")
	})
}
