package api

import (
	"net/http"
	"strings"
	"testing"
)

// TestCORSOnPreRoutingRefusals: the answers written before routing (a
// body over -max-body, 413, or over -max-body-memory, 503) to an ingest
// route carry the CORS headers of the route's own answers, so that a page
// of an allowed origin can read why it was refused. Other origins and
// other routes get none, as their routed answers do.
func TestCORSOnPreRoutingRefusals(t *testing.T) {
	const shop = "http://shop.example"
	exposed := map[string]string{"Access-Control-Allow-Origin": shop, "Access-Control-Expose-Headers": "Retry-After, X-Error, X-Impression-Status"}
	pad := strings.Repeat("p", 2000)
	big := `{"campaign_id":"c1","user_id":"u","pad":"` + pad + `"}`
	for _, lim := range []struct {
		name   string
		opts   Options
		body   string
		status int
	}{
		{"body too large", Options{MaxBodySize: 1024}, big, 413},
		// The budget is smaller than the first buffer of any body, so a
		// body within -max-body is refused for memory.
		{"body memory", Options{MaxBodySize: 1024, MaxBodyMemory: 1024}, track("c1", "u"), 503},
	} {
		t.Run(lim.name, func(t *testing.T) {
			for _, tc := range []struct {
				name, method, path, origin string
				vary                       string
				want                       map[string]string
			}{
				{"track", "POST", "/api/v1/impressions", shop, "Origin", exposed},
				{"batch", "POST", "/api/v1/impressions/batch", shop, "Origin", exposed},
				{"track on an uncleaned path", "POST", "//api/v1/./impressions", shop, "Origin", exposed},
				{"pixel", "GET", "/api/v1/pixel.gif?campaign_id=c1&user_id=u", shop, "Origin", exposed},
				{"track from another origin", "POST", "/api/v1/impressions", "http://evil.example", "Origin", nil},
				{"track without Origin", "POST", "/api/v1/impressions", "", "Origin", nil},
				{"another route", "POST", "/api/v1/campaigns", shop, "", nil},
				{"another route, GET", "GET", "/healthz", shop, "", nil},
			} {
				// Over TCP, where the refusal is written by rejectAndDrain
				// itself, and in memory, where it falls back to the
				// context's response: both paths must carry the headers.
				o := lim.opts
				o.CORSOrigins = []string{shop}
				o.MaxConnsPerIP = 1000
				_, addr := serveTCP(t, o)
				hdr := map[string]string{"Origin": tc.origin}
				if tc.origin == "" {
					delete(hdr, "Origin")
				}
				status, h, body := rawContractExchange(t, addr, tc.method, tc.path, hdr, lim.body)
				if status != lim.status || !strings.Contains(string(body), `"code":`) {
					t.Errorf("%s over TCP: %d %s, want %d", tc.name, status, body, lim.status)
				}
				wantCORSHeader(t, tc.name+" over TCP", h, tc.vary, tc.want)

				if tc.method != "POST" {
					continue // the fasthttp client sends no body with GET
				}
				ts := newTestServer(t, "exact", func(opts *testOptions) {
					opts.MaxBodySize, opts.MaxBodyMemory, opts.CORSOrigins = o.MaxBodySize, o.MaxBodyMemory, o.CORSOrigins
				})
				r := ts.doWith(tc.method, tc.path, lim.body, hdr).want(t, lim.status)
				wantHeaders(t, tc.name+" in memory", r, tc.vary, tc.want)
			}
		})
	}
}

// wantCORSHeader is wantHeaders for a header read off the wire.
func wantCORSHeader(t *testing.T, what string, h http.Header, vary string, want map[string]string) {
	t.Helper()
	for _, name := range corsHeaders {
		if got := h.Get(name); got != want[name] {
			t.Errorf("%s: %s %q, want %q", what, name, got, want[name])
		}
	}
	if got := h.Get("Vary"); got != vary {
		t.Errorf("%s: Vary %q, want %q", what, got, vary)
	}
}
