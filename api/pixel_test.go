package api

import (
	"bytes"
	"image/gif"
	"net/url"
	"strings"
	"testing"
	"time"
)

// pixelQuery builds the pixel's target from alternating names and values.
func pixelQuery(kv ...string) string {
	var q []string
	for i := 0; i < len(kv); i += 2 {
		q = append(q, url.QueryEscape(kv[i])+"="+url.QueryEscape(kv[i+1]))
	}
	return pixelPath + "?" + strings.Join(q, "&")
}

// wantPixel checks an answer of the pixel: status, the GIF (but for
// HEAD), no-store, and X-Error or X-Impression-Status.
func wantPixel(t *testing.T, method string, r response, status int, xError, outcome string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d, want %d (X-Error %q)", method, r.status, status, r.header["X-Error"])
	}
	wantBody := pixelGIF
	if method == "HEAD" {
		wantBody = nil
	}
	if !bytes.Equal(r.body, wantBody) || r.header["Content-Type"] != "image/gif" || r.header["Cache-Control"] != "no-store" {
		t.Fatalf("%s: body %q, Content-Type %q, Cache-Control %q; want the GIF, image/gif, no-store",
			method, r.body, r.header["Content-Type"], r.header["Cache-Control"])
	}
	if r.header["Content-Length"] != "43" {
		t.Fatalf("%s: Content-Length %q, want 43", method, r.header["Content-Length"])
	}
	if got := r.header["X-Error"]; got != xError {
		t.Fatalf("%s: X-Error %q, want %q", method, got, xError)
	}
	if got := r.header["X-Impression-Status"]; got != outcome {
		t.Fatalf("%s: X-Impression-Status %q, want %q", method, got, outcome)
	}
}

func TestPixelIsATransparentGIF(t *testing.T) {
	img, err := gif.Decode(bytes.NewReader(pixelGIF))
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 1 || b.Dy() != 1 {
		t.Fatalf("bounds %v, want 1×1", b)
	}
	if _, _, _, a := img.At(0, 0).RGBA(); a != 0 {
		t.Fatalf("alpha %d, want 0 (transparent)", a)
	}
	if len(pixelGIF) != 43 {
		t.Fatalf("%d bytes, want 43", len(pixelGIF))
	}
}

// TestPixelTracks: the pixel judges an impression as POST
// /api/v1/impressions does, with the same status codes, and answers the
// GIF every time; HEAD tracks as GET does.
func TestPixelTracks(t *testing.T) {
	for _, method := range []string{"GET", "HEAD"} {
		t.Run(method, func(t *testing.T) {
			ts := newTestServer(t, "exact")
			ts.createCampaign("c1")
			ahead := rfc3339(testNow.Add(2 * time.Minute))
			for _, tc := range []struct {
				name    string
				target  string
				status  int
				xError  string
				outcome string
			}{
				{"counted", pixelQuery("campaign_id", "c1", "user_id", "u1"), 200, "", "counted"},
				{"repeat", pixelQuery("campaign_id", "c1", "user_id", "u1", "ad_id", "a7"), 200, "", "duplicate"},
				{"with a timestamp, unknown parameters ignored", pixelQuery("campaign_id", "c1", "user_id", "u2", "ad_id", "a7",
					"timestamp", rfc3339(testNow.Add(-time.Minute)), "cb", "123"), 200, "", "counted"},
				{"no user", pixelQuery("campaign_id", "c1"), 422, "user_id is required", ""},
				{"empty campaign", pixelQuery("campaign_id", "", "user_id", "u3"), 422, "campaign_id is required", ""},
				{"no parameters", pixelPath, 422, "campaign_id is required", ""},
				{"control character", pixelQuery("campaign_id", "c1", "user_id", "u\n"), 422, "user_id must be valid UTF-8 without control characters", ""},
				{"bad timestamp", pixelQuery("campaign_id", "c1", "user_id", "u3", "timestamp", "yesterday"), 422, errTimestampFormat.msg, ""},
				{"too far ahead", pixelQuery("campaign_id", "c1", "user_id", "u3", "timestamp", ahead), 422, "timestamp is more than 1m0s in the future", ""},
				{"unknown campaign", pixelQuery("campaign_id", "nope", "user_id", "u3"), 404, "campaign not found", ""},
				{"repeated parameter", pixelQuery("campaign_id", "c1", "user_id", "u3", "user_id", "u4"), 400, "a query parameter is given more than once", ""},
			} {
				wantPixel(t, method, ts.do(method, tc.target, ""), tc.status, tc.xError, tc.outcome)
			}
			if s := ts.stats("c1"); s.Total != 2 {
				t.Fatalf("stats %+v, want 2 counted", s)
			}
			m := string(ts.do("GET", "/metrics", "").want(t, 200).body)
			for _, want := range []string{
				`impressiond_http_requests_total{method="` + method + `",route="/api/v1/pixel.gif",code="2xx"} 3`,
				`impressiond_http_requests_total{method="` + method + `",route="/api/v1/pixel.gif",code="4xx"} 8`,
				`impressiond_impressions_total{result="counted"} 2`,
				`impressiond_impressions_total{result="duplicate"} 1`,
				`impressiond_impressions_total{result="rejected"} 8`,
			} {
				if !strings.Contains(m, want+"\n") {
					t.Errorf("metrics lack %s", want)
				}
			}
		})
	}
}

// TestPixelToken: with an ingest token the pixel needs it as token=; the
// Authorization header does not stand in for it, and 401 comes before
// any judgement of the impression.
func TestPixelToken(t *testing.T) {
	ts := newTestServer(t, "exact", func(o *testOptions) { o.IngestToken = "ingest-s3cret" })
	ts.createCampaign("c1")
	for _, method := range []string{"GET", "HEAD"} {
		for _, tc := range []struct {
			name   string
			target string
			header map[string]string
			status int
		}{
			{"no token", pixelQuery("campaign_id", "c1", "user_id", "u-"+method), nil, 401},
			{"wrong token", pixelQuery("campaign_id", "c1", "user_id", "u-"+method, "token", "guess"), nil, 401},
			{"header only", pixelQuery("campaign_id", "c1", "user_id", "u-"+method), map[string]string{"Authorization": "Bearer ingest-s3cret"}, 401},
			{"token twice", pixelQuery("campaign_id", "c1", "user_id", "u-"+method, "token", "ingest-s3cret", "token", "ingest-s3cret"), nil, 401},
			{"no token, invalid impression", pixelQuery("campaign_id", "c1"), nil, 401},
			{"token", pixelQuery("campaign_id", "c1", "user_id", "u-"+method, "token", "ingest-s3cret"), nil, 200},
		} {
			r := ts.doWith(method, tc.target, "", tc.header)
			if tc.status == 401 {
				wantPixel(t, method, r, 401, errPixelToken.msg, "")
				if got := r.header["Www-Authenticate"]; got != `Bearer realm="impressiond"` {
					t.Fatalf("%s %s: WWW-Authenticate %q", method, tc.name, got)
				}
				continue
			}
			wantPixel(t, method, r, 200, "", "counted")
		}
	}
	if s := ts.stats("c1"); s.Total != 2 {
		t.Fatalf("stats %+v, want the 2 impressions with the token", s)
	}
}

// TestPixelDedupLimit: at -dedup-max-pairs the pixel answers 503 with
// Retry-After, and the GIF.
func TestPixelDedupLimit(t *testing.T) {
	memoryOnly(t, "-dedup-max-pairs bounds the in-process exact window only")
	ts := boundedServer(t, 1)
	for _, method := range []string{"GET", "HEAD"} {
		ts.do(method, pixelQuery("campaign_id", "c1", "user_id", "u0"), "")
		r := ts.do(method, pixelQuery("campaign_id", "c1", "user_id", "new-"+method), "")
		wantPixel(t, method, r, 503, errDedupLimit.msg, "")
		if r.header["Retry-After"] == "" {
			t.Fatalf("%s: 503 without Retry-After", method)
		}
	}
}

// TestPixelMethodNotAllowed: other methods get 405 with Allow, and the GIF.
func TestPixelMethodNotAllowed(t *testing.T) {
	ts := newTestServer(t, "exact")
	for _, method := range []string{"POST", "DELETE"} {
		r := ts.do(method, pixelQuery("campaign_id", "c1", "user_id", "u1"), "")
		wantPixel(t, method, r, 405, "method not allowed", "")
		if got := r.header["Allow"]; got != "GET, HEAD, OPTIONS" {
			t.Fatalf("%s: Allow %q, want GET, HEAD, OPTIONS", method, got)
		}
	}
}
