package api

import (
	"github.com/valyala/fasthttp"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestMetrics(t *testing.T) {
	memoryOnly(t, "dedup and campaign gauges of the in-process store; TestRedisUnavailable covers impressiond_redis_up")
	ts := newTestServer(t, "bloom")
	ts.createCampaign("secret-campaign")
	ts.do("POST", "/api/v1/impressions", track("secret-campaign", "secret-user")).want(t, 200)
	ts.do("POST", "/api/v1/impressions", track("secret-campaign", "secret-user")).want(t, 200)
	ts.do("POST", "/api/v1/impressions", track("nope", "u")).want(t, 404)
	ts.do("POST", "/api/v1/impressions/batch", "["+track("secret-campaign", "a")+","+track("secret-campaign", "a")+","+`{"campaign_id":"secret-campaign"}`+"]").want(t, 200)
	ts.do("GET", "/nope", "").want(t, 404)

	ctx := scrape(t, ts)
	for _, want := range []string{
		`impressiond_impressions_total{result="counted"} 2`,
		`impressiond_impressions_total{result="duplicate"} 2`,
		`impressiond_impressions_total{result="rejected"} 2`,
		`impressiond_http_requests_total{method="POST",route="/api/v1/impressions",code="2xx"} 2`,
		`impressiond_http_requests_total{method="POST",route="/api/v1/impressions",code="4xx"} 1`,
		`impressiond_http_requests_total{method="POST",route="/api/v1/impressions/batch",code="2xx"} 1`,
		`impressiond_http_requests_total{method="POST",route="/api/v1/campaigns",code="2xx"} 1`,
		`impressiond_http_requests_total{method="",route="unmatched",code="4xx"} 1`,
		`impressiond_campaigns 1`,
		// The test server's bloom window: 100,000 pairs per TTL, 6 slices:
		// a pool of G + K + 3 = 17 sub-filters per shard.
		`impressiond_dedup_generations 17`,
		`impressiond_dedup_pool_full_total 0`,
		`impressiond_panics_total 0`,
		`# TYPE impressiond_http_request_duration_seconds histogram`,
		`impressiond_http_request_duration_seconds_bucket{method="POST",route="/api/v1/impressions",le="+Inf"}`,
		`go_goroutines `,
		`process_resident_memory_bytes `,
	} {
		if !strings.Contains(ctx, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	for _, gauge := range []string{"impressiond_dedup_bytes", "impressiond_dedup_pool_live", "impressiond_dedup_pool_slots", "impressiond_dedup_open_load", "impressiond_dedup_open_load_max", "impressiond_dedup_fp_estimate", "impressiond_dedup_fp_target", "impressiond_dedup_pool_full_total", "impressiond_dedup_overfill_total"} {
		m := regexp.MustCompile(`(?m)^` + gauge + ` (\S+)$`).FindStringSubmatch(ctx)
		if m == nil {
			t.Errorf("metrics lack %s", gauge)
			continue
		}
		if v, err := strconv.ParseFloat(m[1], 64); err != nil || v < 0 || (gauge == "impressiond_dedup_bytes" && v == 0) {
			t.Errorf("%s = %q", gauge, m[1])
		}
	}
	// Never ids as labels.
	if strings.Contains(ctx, "secret") {
		t.Fatal("a campaign or user id leaked into the metrics")
	}
	// Every sample line parses as name{labels} value.
	sample := regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*(\{(?:[^"}]|"[^"]*")*\})? (?:[-+0-9.eE]+|NaN|[+-]Inf)$`)
	for _, line := range strings.Split(strings.TrimSpace(ctx), "\n") {
		if !strings.HasPrefix(line, "#") && !sample.MatchString(line) {
			t.Fatalf("not a Prometheus sample: %q", line)
		}
	}
}

// scrape fetches /metrics through the server and checks its content type.
func scrape(t *testing.T, ts *testServer) string {
	t.Helper()
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("GET")
	ctx.Request.SetRequestURI("/metrics")
	ts.srv.Handler()(&ctx)
	if ct := string(ctx.Response.Header.ContentType()); ctx.Response.StatusCode() != 200 || !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("GET /metrics: %d %s", ctx.Response.StatusCode(), ct)
	}
	return string(ctx.Response.Body())
}

func TestMetricsSingleRouteUnauthorized(t *testing.T) {
	ts := newTestServer(t, "exact", func(o *testOptions) { o.IngestToken = "tok" })
	ts.createCampaign("c1")
	ts.do("POST", "/api/v1/impressions", track("c1", "u1")).want(t, 401)
	ts.doWith("POST", "/api/v1/impressions", track("c1", "u1"), map[string]string{"Authorization": "Bearer tok"}).want(t, 200)
	got := scrape(t, ts)
	for _, want := range []string{
		`impressiond_http_requests_total{method="POST",route="/api/v1/impressions",code="4xx"} 1`,
		`impressiond_http_requests_total{method="POST",route="/api/v1/impressions",code="2xx"} 1`,
		`impressiond_impressions_total{result="rejected"} 0`,
		`impressiond_impressions_total{result="counted"} 1`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
