package api

import (
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/impressiond/impressiond/sketch"
	"github.com/impressiond/impressiond/tracker"
)

// The fuzz targets drive the real handlers with arbitrary bodies. The
// invariant: no panic, and the answer is either the endpoint's success
// with its documented body or a 4xx carrying the JSON error shape. Seeds
// live in testdata/fuzz/<target>; `go test` replays them, `make fuzz`
// explores further.

func fuzzServer(f *testing.F) fasthttp.RequestHandler {
	d, err := sketch.NewExact(sketch.Options{})
	if err != nil {
		f.Fatal(err)
	}
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	srv, err := newServer(testOptions{
		Options:     Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		coreOptions: coreOptions{Dedup: d, MaxSkew: time.Minute, Now: func() time.Time { return now }},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		if err := srv.Close(); err != nil {
			f.Error(err)
		}
	})
	h := srv.Handler()
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("POST")
	ctx.Request.SetRequestURI("/api/v1/campaigns")
	ctx.Request.SetBodyString(`{"id":"c1","name":"Fuzz","start_time":"2026-01-01T00:00:00Z"}`)
	h(&ctx)
	return h
}

func fuzzPost(t *testing.T, h fasthttp.RequestHandler, path string, body []byte) (int, []byte) {
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("POST")
	ctx.Request.SetRequestURI(path)
	ctx.Request.SetBody(body)
	h(&ctx)
	status, out := ctx.Response.StatusCode(), ctx.Response.Body()
	if ct := string(ctx.Response.Header.ContentType()); ct != "application/json" {
		t.Fatalf("body %q: Content-Type %q", body, ct)
	}
	if status >= 400 {
		var e struct {
			Error *string `json:"error"`
			Code  *int    `json:"code"`
		}
		if status >= 500 || json.Unmarshal(out, &e) != nil || e.Error == nil || *e.Error == "" || e.Code == nil || *e.Code != status {
			t.Fatalf("body %q: got %d %s, want a 4xx with the error shape", body, status, out)
		}
	}
	return status, out
}

func FuzzTrackHandler(f *testing.F) {
	h := fuzzServer(f)
	f.Add([]byte(`{"campaign_id":"c1","user_id":"u1"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		status, out := fuzzPost(t, h, "/api/v1/impressions", body)
		if status == 200 {
			var r struct{ Status, Message string }
			if json.Unmarshal(out, &r) != nil || (r.Status != "counted" && r.Status != "duplicate") || r.Message == "" {
				t.Fatalf("body %q: 200 with %s", body, out)
			}
		} else if status != 400 && status != 404 && status != 422 {
			t.Fatalf("body %q: status %d", body, status)
		}
	})
}

func FuzzBatchHandler(f *testing.F) {
	h := fuzzServer(f)
	f.Add([]byte(`[{"campaign_id":"c1","user_id":"u1"},{"campaign_id":"nope","user_id":"u2"}]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		status, out := fuzzPost(t, h, "/api/v1/impressions/batch", body)
		if status == 200 {
			var r struct {
				Counted, Duplicates, Rejected *int
				Errors                        []struct {
					Index int
					Error string
					Code  int
				}
			}
			if json.Unmarshal(out, &r) != nil || r.Counted == nil || r.Duplicates == nil || r.Rejected == nil ||
				*r.Counted+*r.Duplicates+*r.Rejected < 1 || len(r.Errors) != *r.Rejected {
				t.Fatalf("body %q: 200 with %s", body, out)
			}
			for _, e := range r.Errors {
				if (e.Code != 404 && e.Code != 422) || e.Error == "" || e.Index < 0 {
					t.Fatalf("body %q: item error %+v", body, e)
				}
			}
		} else if status != 400 && status != 422 {
			t.Fatalf("body %q: status %d", body, status)
		}
	})
}

func FuzzCreateCampaign(f *testing.F) {
	h := fuzzServer(f)
	f.Add([]byte(`{"id":"c2","name":"Two","start_time":"2026-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		status, out := fuzzPost(t, h, "/api/v1/campaigns", body)
		if status == 201 {
			var c campaignCreatedJSON
			if json.Unmarshal(out, &c) != nil || !tracker.ValidID([]byte(c.ID)) || c.Name == "" || c.Message == "" {
				t.Fatalf("body %q: 201 with %s", body, out)
			}
			if _, err := time.Parse(time.RFC3339Nano, c.StartTime); err != nil {
				t.Fatalf("body %q: start_time %q", body, c.StartTime)
			}
		} else if status != 400 && status != 409 && status != 422 {
			t.Fatalf("body %q: status %d", body, status)
		}
	})
}
