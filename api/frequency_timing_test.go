package api

import (
	"fmt"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkFrequencyHandler measures POST /api/v1/frequency called
// directly, as loadtest's frequency workload asks it: 100 campaigns capped
// at 3/1h and 10/24h, 1,000 users, 30% of the pairs exposed 1 to 3 times
// before the timer starts, and every check one user about all 100
// campaigns.
func BenchmarkFrequencyHandler(b *testing.B) {
	const campaigns, users = 100, 1000
	for _, mode := range []string{"bloom", "exact"} {
		b.Run(mode, func(b *testing.B) {
			_, h := newBenchServer(b, mode)
			var ctx fasthttp.RequestCtx
			call := func(method, uri, body string, want int) {
				ctx.Request.Reset()
				ctx.Response.Reset()
				ctx.Request.Header.SetMethod(method)
				ctx.Request.SetRequestURI(uri)
				ctx.Request.SetBodyString(body)
				h(&ctx)
				if ctx.Response.StatusCode() != want {
					b.Fatalf("%s %s: %d %s", method, uri, ctx.Response.StatusCode(), ctx.Response.Body())
				}
			}
			ids := make([]string, campaigns)
			for i := range ids {
				ids[i] = fmt.Sprintf("c-%03d", i)
				call("POST", "/api/v1/campaigns", fmt.Sprintf(`{"id":%q,"name":"C","start_time":"2020-01-01T00:00:00Z","frequency_caps":[{"max":3,"window":"1h"},{"max":10,"window":"24h"}]}`, ids[i]), 201)
			}
			for u := range users {
				for i, id := range ids {
					if (u*campaigns+i)%10 < 3 {
						for range 1 + (u+i)%3 {
							call("POST", "/api/v1/impressions", fmt.Sprintf(`{"campaign_id":%q,"user_id":"user-%d"}`, id, u), 200)
						}
					}
				}
			}
			bodies := make([][]byte, users)
			for u := range bodies {
				bodies[u] = fmt.Appendf(nil, `{"user_id":"user-%d","campaign_ids":["%s"]}`, u, strings.Join(ids, `","`))
			}
			ctx.Request.Reset()
			ctx.Request.Header.SetMethod("POST")
			ctx.Request.SetRequestURI("/api/v1/frequency")
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				ctx.Request.SetBodyRaw(bodies[i%users])
				ctx.Response.Reset()
				h(&ctx)
				if ctx.Response.StatusCode() != 200 {
					b.Fatalf("check: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
				}
				i += 7
			}
		})
	}
}
