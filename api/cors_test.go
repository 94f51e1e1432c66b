package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/impressiond/impressiond/sketch"
)

var corsHeaders = []string{
	"Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
	"Access-Control-Max-Age", "Access-Control-Expose-Headers", "Access-Control-Allow-Credentials",
}

// wantHeaders checks that r carries exactly the CORS headers in want
// (with their values) and Vary as given.
func wantHeaders(t *testing.T, what string, r response, vary string, want map[string]string) {
	t.Helper()
	for _, h := range corsHeaders {
		if got := r.header[h]; got != want[h] {
			t.Errorf("%s: %s %q, want %q", what, h, got, want[h])
		}
	}
	if got := r.header["Vary"]; got != vary {
		t.Errorf("%s: Vary %q, want %q", what, got, vary)
	}
}

func TestCORSPreflight(t *testing.T) {
	const shop = "http://shop.example:8000"
	allowed := func(origin, methods string) map[string]string {
		return map[string]string{
			"Access-Control-Allow-Origin":  origin,
			"Access-Control-Allow-Methods": methods,
			"Access-Control-Allow-Headers": "Authorization, Content-Type, Content-Encoding",
			"Access-Control-Max-Age":       "7200",
		}
	}
	preflight := func(origin string) map[string]string {
		h := map[string]string{"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
		if origin != "" {
			h["Origin"] = origin
		}
		return h
	}
	for _, tc := range []struct {
		name    string
		origins []string
		path    string
		origin  string
		allow   string
		vary    string
		want    map[string]string
	}{
		{"allowed origin", []string{"https://other.example", shop}, "/api/v1/impressions", shop, "OPTIONS, POST", "Origin", allowed(shop, "POST")},
		{"allowed origin, batch", []string{shop}, "/api/v1/impressions/batch", shop, "OPTIONS, POST", "Origin", allowed(shop, "POST")},
		{"allowed origin, pixel", []string{shop}, pixelPath, shop, "GET, HEAD, OPTIONS", "Origin", allowed(shop, "GET, HEAD")},
		{"configured in upper case", []string{"HTTP://Shop.Example:8000/"}, "/api/v1/impressions", shop, "OPTIONS, POST", "Origin", allowed(shop, "POST")},
		{"any origin", []string{"*"}, "/api/v1/impressions", "https://anyone.example", "OPTIONS, POST", "Origin", allowed("*", "POST")},
		{"origin not allowed", []string{shop}, "/api/v1/impressions", "http://evil.example", "OPTIONS, POST", "Origin", nil},
		{"other port", []string{shop}, "/api/v1/impressions", "http://shop.example:8001", "OPTIONS, POST", "Origin", nil},
		{"no Origin", []string{shop}, "/api/v1/impressions", "", "OPTIONS, POST", "Origin", nil},
		{"CORS off", nil, "/api/v1/impressions", shop, "OPTIONS, POST", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestServer(t, "exact", func(o *testOptions) { o.CORSOrigins = tc.origins; o.IngestToken = "ingest" })
			r := ts.doWith("OPTIONS", tc.path, "", preflight(tc.origin))
			if r.status != 204 || len(r.body) != 0 || r.header["Allow"] != tc.allow {
				t.Fatalf("got %d %q Allow %q, want 204, no body, Allow %q", r.status, r.body, r.header["Allow"], tc.allow)
			}
			wantHeaders(t, "preflight", r, tc.vary, tc.want)
		})
	}
}

// TestCORSResponses: the ingest routes' answers, errors included, carry
// Access-Control-Allow-Origin for an allowed origin only; other routes
// never carry CORS headers.
func TestCORSResponses(t *testing.T) {
	const shop = "http://shop.example"
	ts := newTestServer(t, "exact", func(o *testOptions) { o.CORSOrigins = []string{shop}; o.IngestToken = "ingest" })
	ts.createCampaign("c1")
	exposed := map[string]string{"Access-Control-Allow-Origin": shop, "Access-Control-Expose-Headers": "Retry-After, X-Error, X-Impression-Status"}
	withToken := func(origin string) map[string]string {
		return map[string]string{"Origin": origin, "Authorization": "Bearer ingest", "Content-Type": "application/json"}
	}
	for _, tc := range []struct {
		name, method, path, body string
		header                   map[string]string
		status                   int
		want                     map[string]string
	}{
		{"track", "POST", "/api/v1/impressions", track("c1", "u1"), withToken(shop), 200, exposed},
		{"track, unknown campaign", "POST", "/api/v1/impressions", track("nope", "u1"), withToken(shop), 404, exposed},
		{"track without the token", "POST", "/api/v1/impressions", track("c1", "u1"), map[string]string{"Origin": shop}, 401, exposed},
		{"batch", "POST", "/api/v1/impressions/batch", "[" + track("c1", "u2") + "]", withToken(shop), 200, exposed},
		{"track from another origin", "POST", "/api/v1/impressions", track("c1", "u3"), withToken("http://evil.example"), 200, nil},
		{"track without Origin", "POST", "/api/v1/impressions", track("c1", "u4"), withToken(""), 200, nil},
	} {
		if tc.header["Origin"] == "" {
			delete(tc.header, "Origin")
		}
		r := ts.doWith(tc.method, tc.path, tc.body, tc.header).want(t, tc.status)
		wantHeaders(t, tc.name, r, "Origin", tc.want)
	}
	r := ts.doWith("GET", pixelQuery("campaign_id", "c1", "user_id", "u5", "token", "ingest"), "", map[string]string{"Origin": shop})
	wantPixel(t, "GET", r, 200, "", "counted")
	wantHeaders(t, "pixel", r, "Origin", exposed)
	for _, path := range []string{"/healthz", "/api/v1/campaigns/c1"} {
		r := ts.doWith("GET", path, "", map[string]string{"Origin": shop}).want(t, 200)
		wantHeaders(t, path, r, "", nil)
	}
}

func TestParseCORSOrigin(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"*", "*", ""},
		{" https://Shop.Example ", "https://shop.example", ""},
		{"http://127.0.0.1:8080/", "http://127.0.0.1:8080", ""},
		{"shop.example", "", "want http:// or https://"},
		{"ftp://shop.example", "", "want http:// or https://"},
		{"https://shop.example/page", "", "nothing more"},
		{"https://user@shop.example", "", "nothing more"},
		{"https://shop.example?x=1", "", "nothing more"},
		{"https://", "", "nothing more"},
	} {
		got, err := ParseCORSOrigin(tc.in)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("ParseCORSOrigin(%q): got %q, %v; want %q", tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseCORSOrigin(%q): got %q, %v; want an error about %q", tc.in, got, err, tc.err)
		}
	}
	d, err := sketch.NewExact(sketch.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newServer(testOptions{Options: Options{CORSOrigins: []string{"shop.example"}}, coreOptions: coreOptions{Dedup: d}}); err == nil {
		t.Fatal("New accepted a bad CORS origin")
	}
}

// corsPage is the page of the other origin: it reports one impression
// with fetch, JSON and the ingest token, as an ad tag would.
const corsPage = `<!doctype html><title>shop</title><script>
async function report(api, user) {
	try {
		const r = await fetch(api + '/api/v1/impressions', {
			method: 'POST',
			headers: {'Content-Type': 'application/json', 'Authorization': 'Bearer ingest-s3cret'},
			body: JSON.stringify({campaign_id: 'c1', user_id: user}),
		});
		return r.status + ' ' + (await r.json()).status;
	} catch (e) {
		return 'failed: ' + e.name;
	}
}
</script>`

// TestCORSFromBrowser: a page served from another origin reports an
// impression with fetch, JSON and the token when its origin is allowed;
// when it is not, the browser refuses the request and nothing is counted.
func TestCORSFromBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(corsPage))
	}))
	t.Cleanup(page.Close)
	pageOrigin := page.URL // http://127.0.0.1:port, another port than the API's

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox, // root in a container has no usable sandbox
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("starting %s: %v", chromium, err)
	}

	for _, tc := range []struct {
		name    string
		origins []string
		want    string // what the page's fetch reports
		total   uint64
	}{
		{"origin allowed", []string{"https://other.example", pageOrigin}, "200 counted", 1},
		{"any origin", []string{"*"}, "200 counted", 1},
		{"origin not allowed", []string{"https://other.example"}, "failed: TypeError", 0},
		{"CORS off", nil, "failed: TypeError", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, addr := serveTCP(t, Options{AdminToken: "admin", IngestToken: "ingest-s3cret", CORSOrigins: tc.origins})
			api := dashboardAPI{t: t, base: "http://" + addr, token: "admin"}
			api.call("POST", "/api/v1/campaigns", map[string]string{"id": "c1", "name": "C1", "start_time": "2020-01-01T00:00:00Z"}, 201, nil)
			tab, cancelTab := chromedp.NewContext(browser)
			defer cancelTab()
			if err := chromedp.Do(tab, chromedp.Navigate(pageOrigin+"/")); err != nil {
				t.Fatal(err)
			}
			got, err := chromedp.Run(tab, chromedp.Evaluate[string](`report('http://`+addr+`', 'u1')`, chromedp.EvalAwaitPromise))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("fetch from %s: %q, want %q", pageOrigin, got, tc.want)
			}
			var s statsJSON
			api.call("GET", "/api/v1/campaigns/c1/stats", nil, 200, &s)
			if s.Total != tc.total {
				t.Fatalf("total %d, want %d", s.Total, tc.total)
			}
		})
	}
}
