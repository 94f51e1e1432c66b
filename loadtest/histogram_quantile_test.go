package main

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestHistogramQuantileAWK: histogram_quantile.awk answers as Prometheus's
// histogram_quantile(q, sum by (le) (...)) does: the series of every method
// of the route summed per bucket (an OPTIONS series of zeros listed first
// once broke it), linear inside the bucket, the highest finite bound for a
// rank in +Inf.
func TestHistogramQuantileAWK(t *testing.T) {
	if _, err := exec.LookPath("awk"); err != nil {
		t.Skip("no awk in PATH")
	}
	series := func(method string, counts ...int) string {
		var b strings.Builder
		for i, le := range []string{"1e-05", "2.5e-05", "5e-05", "+Inf"} {
			b.WriteString(`impressiond_http_request_duration_seconds_bucket{method="` + method + `",route="/api/v1/impressions",le="` + le + `"} ` + strconv.Itoa(counts[i]) + "\n")
		}
		return b.String()
	}
	scrape := series("OPTIONS", 0, 0, 0, 0) + series("POST", 50, 80, 90, 100) + series("HEAD", 0, 0, 0, 0) +
		`impressiond_http_request_duration_seconds_bucket{method="POST",route="/api/v1/impressions/batch",le="1e-05"} 1000` + "\n"
	for _, tc := range []struct {
		q, method string
		want      float64
	}{
		{"0.5", "", 1e-05},                // rank 50: the top of the first bucket
		{"0.65", "", 1e-05 + 1.5e-05*0.5}, // halfway into the second
		{"0.9", "POST", 5e-05},            // the top of the third
		{"0.99", "", 5e-05},               // in +Inf: the highest finite bound
		{"0.25", "POST", 5e-06},           // halfway into the first, from 0
	} {
		cmd := exec.Command("awk", "-v", "q="+tc.q, "-v", "method="+tc.method, "-f", "histogram_quantile.awk")
		cmd.Stdin = strings.NewReader(scrape)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("q=%s: %v", tc.q, err)
		}
		got, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
		if err != nil || got < tc.want*0.999 || got > tc.want*1.001 {
			t.Errorf("q=%s method=%q: got %s, want %g", tc.q, tc.method, out, tc.want)
		}
	}
}
