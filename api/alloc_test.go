//go:build !race

package api

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// TestTrackDoesNotAllocate pins the hot path: tracking one impression,
// counted or duplicate, with or without a timestamp, allocates nothing once
// the parser pool is warm.
func TestTrackDoesNotAllocate(t *testing.T) {
	for _, withTS := range []bool{false, true} {
		_, h := newBenchServer(t, "bloom")
		bodies := trackBodies(withTS)
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod("POST")
		ctx.Request.SetRequestURI("/api/v1/impressions")
		i := 0
		run := func() {
			ctx.Request.SetBodyRaw(bodies[i%len(bodies)])
			ctx.Response.Reset()
			h(&ctx)
			if ctx.Response.StatusCode() != 200 {
				t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
			i++
		}
		for range 100 {
			run() // warm the pools
		}
		if n := testing.AllocsPerRun(1000, run); n != 0 {
			t.Errorf("timestamp=%v: %v allocations per tracked impression, want 0", withTS, n)
		}
	}
}
