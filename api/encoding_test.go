package api

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
)

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zlibBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func flateBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.DefaultCompression)
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	w, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	return w.EncodeAll(b, nil)
}

// TestCompressedTrack: a body in every accepted coding, and in lists of
// them, is counted exactly like the plain body, on both track routes.
func TestCompressedTrack(t *testing.T) {
	for _, c := range []struct {
		coding string
		encode func(testing.TB, []byte) []byte
	}{
		{"gzip", gzipBytes},
		{"x-gzip", gzipBytes},
		{"GZip", gzipBytes}, // codings are case-insensitive
		{"deflate", zlibBytes},
		{"deflate", flateBytes}, // raw deflate, as some clients send it
		{"zstd", zstdBytes},
		{"identity", func(_ testing.TB, b []byte) []byte { return b }},
		{"gzip, identity", gzipBytes},
		{"identity,gzip", gzipBytes},
		// Applied in order: zstd first, then gzip.
		{"zstd, gzip", func(t testing.TB, b []byte) []byte { return gzipBytes(t, zstdBytes(t, b)) }},
	} {
		t.Run(c.coding, func(t *testing.T) {
			ts := newTestServer(t, "exact")
			ts.createCampaign("c")
			h := map[string]string{"Content-Encoding": c.coding}
			r := ts.doWith("POST", "/api/v1/impressions", string(c.encode(t, []byte(track("c", "u0")))), h).want(t, 200)
			if !strings.Contains(string(r.body), `"counted"`) {
				t.Fatalf("single: %s", r.body)
			}
			ts.doWith("POST", "/api/v1/impressions", string(c.encode(t, []byte(track("c", "u0")))), h).want(t, 200)
			var items []string
			for i := range 1000 {
				items = append(items, track("c", fmt.Sprintf("u%d", i)))
			}
			batch := "[" + strings.Join(items, ",") + "]"
			r = ts.doWith("POST", "/api/v1/impressions/batch", string(c.encode(t, []byte(batch))), h).want(t, 200)
			if want := `{"counted":999,"duplicates":1,"rejected":0,"errors":[]}`; string(r.body) != want {
				t.Fatalf("batch: %s, want %s", r.body, want)
			}
			if got := ts.stats("c").Total; got != 1000 {
				t.Fatalf("total %d, want 1000", got)
			}
		})
	}
}

// gzipBomb is n MiB of zeros, gzipped: n members of one MiB each (a gzip
// stream may hold many), about a KiB apiece.
func gzipBomb(t testing.TB, n int) []byte {
	member := gzipBytes(t, make([]byte, 1<<20))
	return bytes.Repeat(member, n)
}

// TestCompressedZipBomb: a 1 MiB body that inflates to 1 GiB is refused
// with a 413 once decoding passes -max-body, fast, with nothing counted and
// all body memory returned.
func TestCompressedZipBomb(t *testing.T) {
	ts := newTestServer(t, "exact")
	ts.createCampaign("c")
	bomb := gzipBomb(t, 1024)
	if len(bomb) > 4<<20 {
		t.Fatalf("bomb of %d bytes is over -max-body itself", len(bomb))
	}
	for _, path := range []string{"/api/v1/impressions", "/api/v1/impressions/batch"} {
		start := time.Now()
		r := ts.doWith("POST", path, string(bomb), map[string]string{"Content-Encoding": "gzip"}).want(t, 413)
		// Generous on a loaded machine: decoding 1 GiB would take seconds
		// more; this tells stopping at the limit from not stopping.
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("%s: 413 after %s", path, d)
		}
		if want := `{"error":"request body is larger than 4194304 bytes once decoded","code":413}`; string(r.body) != want {
			t.Fatalf("%s: %s, want %s", path, r.body, want)
		}
	}
	if got := ts.stats("c").Total; got != 0 {
		t.Fatalf("total %d after bombs, want 0", got)
	}
	if got := ts.srv.bodyMem.used.Load(); got != 0 {
		t.Fatalf("body memory %d held after the requests, want 0", got)
	}
}

// TestCompressedBodyLimit: the decoded size is held to -max-body exactly,
// and the decoded buffer comes from the body memory budget.
func TestCompressedBodyLimit(t *testing.T) {
	const max = 1000
	ts := newTestServer(t, "exact", func(o *testOptions) { o.MaxBodySize = max })
	ts.createCampaign("c")
	body := func(n int) []byte { // a valid impression of n bytes
		b := []byte(track("c", "u"))
		return append(b, bytes.Repeat([]byte(" "), n-len(b))...)
	}
	for _, coding := range []string{"gzip", "zstd"} {
		enc := gzipBytes
		if coding == "zstd" {
			enc = zstdBytes
		}
		h := map[string]string{"Content-Encoding": coding}
		ts.doWith("POST", "/api/v1/impressions", string(enc(t, body(max))), h).want(t, 200)
		r := ts.doWith("POST", "/api/v1/impressions", string(enc(t, body(max+1))), h).want(t, 413)
		if want := `{"error":"request body is larger than 1000 bytes once decoded","code":413}`; string(r.body) != want {
			t.Fatalf("%s: %s, want %s", coding, r.body, want)
		}
	}

	// A budget that holds the compressed body but not the decoded one.
	ts = newTestServer(t, "exact", func(o *testOptions) { o.MaxBodySize, o.MaxBodyMemory = 64<<10, 64<<10 })
	ts.createCampaign("c")
	b := []byte(track("c", "u"))
	b = append(b, bytes.Repeat([]byte(" "), 60<<10)...)
	r := ts.doWith("POST", "/api/v1/impressions", string(gzipBytes(t, b)), map[string]string{"Content-Encoding": "gzip"}).want(t, 503)
	if !strings.Contains(string(r.body), "request body memory") {
		t.Fatalf("503 body %s", r.body)
	}
	var m bytes.Buffer
	ts.srv.writeMetrics(&m)
	for _, want := range []string{
		"\nimpressiond_body_memory_refused_total 1\n",
		"\nimpressiond_body_memory_bytes 0\n",
		`impressiond_http_requests_total{method="POST",route="/api/v1/impressions",code="5xx"} 1`,
	} {
		if !strings.Contains(m.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestUnsupportedEncoding: a coding not accepted, or a malformed list, is
// a 415 naming the accepted codings in Accept-Encoding; nothing is counted.
func TestUnsupportedEncoding(t *testing.T) {
	ts := newTestServer(t, "exact")
	ts.createCampaign("c")
	body := string(gzipBytes(t, []byte(track("c", "u"))))
	for _, coding := range []string{
		"br",
		"gzip, br",
		"compress",
		"gzip;q=1",                     // not a coding list
		"gzip gzip",                    // no comma
		"gzip, gzip, gzip, gzip, gzip", // more than maxCodings
	} {
		for _, path := range []string{"/api/v1/impressions", "/api/v1/impressions/batch"} {
			r := ts.doWith("POST", path, body, map[string]string{"Content-Encoding": coding}).want(t, 415)
			if got := r.header["Accept-Encoding"]; got != "gzip, deflate, zstd" {
				t.Errorf("%s %q: Accept-Encoding %q", path, coding, got)
			}
			if want := `{"error":"Content-Encoding must be a list of gzip, deflate, zstd or identity","code":415}`; string(r.body) != want {
				t.Errorf("%s %q: %s", path, coding, r.body)
			}
		}
	}
	if got := ts.stats("c").Total; got != 0 {
		t.Fatalf("total %d, want 0", got)
	}
	var m bytes.Buffer
	ts.srv.writeMetrics(&m)
	if want := `impressiond_http_requests_total{method="POST",route="/api/v1/impressions",code="4xx"} 6`; !strings.Contains(m.String(), want) {
		t.Errorf("metrics lack %s", want)
	}
}

// TestCorruptEncoding: data that does not decode as its coding says is a
// 400 that says so.
func TestCorruptEncoding(t *testing.T) {
	ts := newTestServer(t, "exact")
	ts.createCampaign("c")
	good := gzipBytes(t, []byte(track("c", "u")))
	for _, c := range []struct {
		name, coding, body, want string
	}{
		{"not gzip", "gzip", track("c", "u"), "cannot decode the gzip request body"},
		{"truncated gzip", "gzip", string(good[:len(good)-6]), "cannot decode the gzip request body"},
		{"not zstd", "zstd", track("c", "u"), "cannot decode the zstd request body"},
		{"not deflate", "deflate", "\xff\xff\xff\xff", "cannot decode the deflate request body"},
		{"empty gzip", "gzip", "", "cannot decode the gzip request body"},
		{"gzip sent as zstd, gzip", "zstd, gzip", string(good), "cannot decode the zstd request body"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, path := range []string{"/api/v1/impressions", "/api/v1/impressions/batch"} {
				r := ts.doWith("POST", path, c.body, map[string]string{"Content-Encoding": c.coding}).want(t, 400)
				if !strings.Contains(string(r.body), c.want) {
					t.Errorf("%s: %s, want %q", path, r.body, c.want)
				}
			}
		})
	}
	if got := ts.stats("c").Total; got != 0 {
		t.Fatalf("total %d, want 0", got)
	}
}
