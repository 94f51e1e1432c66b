package api

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestMetricsSeriesFromStart: before any request, every route's 2xx, 4xx
// and 5xx counters and the refused-connection counters exist at 0 (so that
// rate() sees the first error), and the latency histograms have the
// buckets from 10µs to 10s.
func TestMetricsSeriesFromStart(t *testing.T) {
	ts := newTestServer(t, "exact")
	var buf bytes.Buffer
	ts.srv.writeMetrics(&buf)
	m := buf.String()
	for _, r := range ts.srv.metrics.routes {
		for _, class := range []string{"2xx", "4xx", "5xx"} {
			want := fmt.Sprintf("\nimpressiond_http_requests_total{method=%q,route=%q,code=%q} 0\n", r.method, r.route, class)
			if !strings.Contains(m, want) {
				t.Errorf("no %s", strings.TrimSpace(want))
			}
		}
		for _, le := range []string{"1e-05", "2.5e-05", "5e-05", "0.0001", "0.001", "0.01", "0.1", "1", "10", "+Inf"} {
			want := fmt.Sprintf("\nimpressiond_http_request_duration_seconds_bucket{method=%q,route=%q,le=%q} 0\n", r.method, r.route, le)
			if !strings.Contains(m, want) {
				t.Errorf("no %s", strings.TrimSpace(want))
			}
		}
	}
	for _, want := range []string{
		"\nimpressiond_connections_refused_total{reason=\"per_ip\"} 0\n",
		"\nimpressiond_connections_refused_total{reason=\"max_conns\"} 0\n",
		"\n# TYPE impressiond_connections_refused_total counter\n",
		"\n# TYPE process_open_fds gauge\n",
		"\n# TYPE process_max_fds gauge\n",
		"\n# TYPE go_cgo_calls_total counter\n",
		"\n# TYPE process_io_read_bytes_total counter\n",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("no %q", want)
		}
	}
	if strings.Contains(m, "\n# HELP go_goroutines\n") || strings.Contains(m, "go_cgo_calls_count") {
		t.Error("library metadata not fixed")
	}
}

// TestConnectionsRefusedCounted: a connection refused at a cap counts once
// under its reason, and not under the other.
func TestConnectionsRefusedCounted(t *testing.T) {
	for _, tc := range []struct {
		name       string
		max, perIP int
		status     int
		reason     string
	}{
		{"per IP", 100, 2, 429, "per_ip"},
		{"overall", 2, 100, 503, "max_conns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, ln := serveCountingTCP(t, Options{MaxConns: tc.max, MaxConnsPerIP: tc.perIP})
			addr := ln.Addr().String()
			for range 2 {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
			}
			ln.wait(t, 2)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
				t.Fatal(err)
			}
			fmt.Fprint(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := io.ReadAll(c)
			if err != nil || !strings.HasPrefix(string(resp), fmt.Sprintf("HTTP/1.1 %d ", tc.status)) {
				t.Fatalf("over the limit: %q, %v; want %d", resp, err, tc.status)
			}
			// The response is written after the count: it is there now.
			var buf bytes.Buffer
			srv.writeMetrics(&buf)
			for reason, want := range map[string]int{"per_ip": 0, "max_conns": 0, tc.reason: 1} {
				line := fmt.Sprintf("\nimpressiond_connections_refused_total{reason=%q} %d\n", reason, want)
				if !strings.Contains(buf.String(), line) {
					t.Errorf("no %s", strings.TrimSpace(line))
				}
			}
		})
	}
}

// TestPromtoolCheckMetrics runs `promtool check metrics` on a scrape of
// durable servers in both dedup modes, after traffic on every route, so
// every family they write appears; it must find nothing. Without promtool
// (Debian package prometheus) it skips, except in CI.
func TestPromtoolCheckMetrics(t *testing.T) {
	memoryOnly(t, "the data directory's metrics")
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not installed (apt-get install prometheus)")
		}
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
	for _, mode := range []string{"bloom", "exact"} {
		t.Run(mode, func(t *testing.T) {
			ts := newTestServer(t, mode, func(o *testOptions) {
				o.DataDir = t.TempDir()
				o.FsyncInterval = 0
				o.SnapshotInterval = time.Hour
				o.AccessLog = true
			})
			ts.createCampaign("c")
			ts.do("POST", "/api/v1/impressions", track("c", "u")).want(t, 200)
			ts.do("POST", "/api/v1/impressions", track("c", "u")).want(t, 200)
			ts.do("POST", "/api/v1/impressions", "{").want(t, 400)
			ts.do("POST", "/api/v1/impressions/batch", "["+track("c", "v")+"]").want(t, 200)
			ts.do("GET", "/api/v1/campaigns", "").want(t, 200)
			ts.do("GET", "/api/v1/campaigns/c", "").want(t, 200)
			ts.do("GET", "/api/v1/campaigns/c/stats", "").want(t, 200)
			ts.do("GET", "/api/v1/campaigns/c/series", "").want(t, 200)
			ts.do("GET", "/healthz", "").want(t, 200)
			ts.do("GET", "/readyz", "").want(t, 200)
			ts.do("GET", "/", "")
			ts.do("GET", "/nowhere", "").want(t, 404)
			ts.do("DELETE", "/healthz", "").want(t, 405)
			if err := ts.srv.Tracker().Snapshot(); err != nil {
				t.Fatal(err)
			}
			scrape := ts.do("GET", "/metrics", "").want(t, 200).body
			cmd := exec.Command(promtool, "check", "metrics")
			cmd.Stdin = bytes.NewReader(scrape)
			out, err := cmd.CombinedOutput()
			if err != nil || len(out) > 0 {
				t.Fatalf("promtool check metrics: %v\n%s", err, out)
			}
		})
	}
}
