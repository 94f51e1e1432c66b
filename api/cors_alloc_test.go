//go:build !race

package api

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// TestTrackWithCORSDoesNotAllocate: with CORS on, the single-impression
// hot path from an allowed origin, CORS headers and all, still allocates
// nothing.
func TestTrackWithCORSDoesNotAllocate(t *testing.T) {
	for _, origins := range [][]string{{"https://shop.example"}, {"*"}} {
		_, h := newBenchServer(t, "bloom", func(o *testOptions) { o.CORSOrigins = origins })
		bodies := trackBodies(false)
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod("POST")
		ctx.Request.SetRequestURI("/api/v1/impressions")
		ctx.Request.Header.Set("Origin", "https://shop.example")
		i := 0
		run := func() {
			ctx.Request.SetBodyRaw(bodies[i%len(bodies)])
			ctx.Response.Reset()
			h(&ctx)
			if ctx.Response.StatusCode() != 200 || len(ctx.Response.Header.Peek("Access-Control-Allow-Origin")) == 0 {
				t.Fatalf("status %d, Access-Control-Allow-Origin %q: %s", ctx.Response.StatusCode(),
					ctx.Response.Header.Peek("Access-Control-Allow-Origin"), ctx.Response.Body())
			}
			i++
		}
		for range 100 {
			run() // warm the pools
		}
		if n := testing.AllocsPerRun(1000, run); n != 0 {
			t.Errorf("origins %v: %v allocations per tracked impression, want 0", origins, n)
		}
	}
}
