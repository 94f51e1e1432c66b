package api

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkCompressedBatch measures a 5,000-item batch with timestamps, in
// Bloom mode, every item a repeat (so the dedup state does not grow), sent
// plain and in each coding: the cost of decoding against the bytes it
// saves on the wire (wire-bytes/op).
func BenchmarkCompressedBatch(b *testing.B) {
	const size = 5000
	_, h := newBenchServer(b, "bloom")
	items := make([]string, size)
	for i := range items {
		items[i] = string(trackBody(true, fmt.Sprintf("user-%d", i)))
	}
	plain := []byte("[" + strings.Join(items, ",") + "]")
	codings := []struct {
		name, coding string
		body         []byte
	}{
		{"plain", "", plain},
		{"gzip", "gzip", gzipBytes(b, plain)},
		{"deflate", "deflate", zlibBytes(b, plain)},
		{"zstd", "zstd", zstdBytes(b, plain)},
	}
	var ctx fasthttp.RequestCtx
	call := func(b testing.TB, coding string, body []byte, want string) {
		ctx.Request.Header.SetMethod("POST")
		ctx.Request.SetRequestURI("/api/v1/impressions/batch")
		if coding != "" {
			ctx.Request.Header.Set("Content-Encoding", coding)
		}
		ctx.Request.SetBodyRaw(body)
		ctx.Response.Reset()
		h(&ctx)
		if ctx.Response.StatusCode() != 200 || !bytes.Contains(ctx.Response.Body(), []byte(want)) {
			b.Fatalf("batch: %d %s, want %s", ctx.Response.StatusCode(), ctx.Response.Body(), want)
		}
	}
	call(b, "", plain, `"rejected":0,`) // every item counted once, before the timer
	for _, c := range codings {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(plain)))
			for b.Loop() {
				call(b, c.coding, c.body, `"duplicates":5000,`)
			}
			b.ReportMetric(float64(len(c.body)), "wire-bytes/op")
			b.ReportMetric(float64(b.N)*size/b.Elapsed().Seconds(), "impressions/s")
		})
	}
}
