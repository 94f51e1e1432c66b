# histogram_quantile.awk computes, from one /metrics scrape, the quantile q
# of impressiond_http_request_duration_seconds for one route, the way
# Prometheus's histogram_quantile does: find the bucket holding rank
# q × count, interpolate linearly inside it (from 0 for the first bucket),
# and answer the highest finite bound if the rank falls in +Inf. The series
# of every method of the route are summed by bucket, as
# histogram_quantile(q, sum by (le) (...)) does; method=POST keeps one. Over a
# whole scrape it is the quantile since start-up, which a load test on a
# fresh server makes the quantile of the test.
#
#   curl -s http://127.0.0.1:8080/metrics |
#     awk -v q=0.99 -v route=/api/v1/impressions -f loadtest/histogram_quantile.awk
BEGIN { if (q == "") q = 0.99; if (route == "") route = "/api/v1/impressions" }
index($0, "impressiond_http_request_duration_seconds_bucket{") == 1 && index($0, "route=\"" route "\"") &&
	(method == "" || index($0, "method=\"" method "\"")) {
	match($0, /le="[^"]*"/)
	le = substr($0, RSTART + 4, RLENGTH - 5)
	if (!(le in count)) bounds[++n] = le
	count[le] += $NF
}
END {
	if (n == 0) { print "no observations for route " route > "/dev/stderr"; exit 1 }
	# Bounds in increasing order, +Inf last (insertion sort: there are 20).
	for (i = 2; i <= n; i++) {
		b = bounds[i]
		for (j = i - 1; j >= 1 && (bounds[j] == "+Inf" || (b != "+Inf" && bounds[j] + 0 > b + 0)); j--) bounds[j + 1] = bounds[j]
		bounds[j + 1] = b
	}
	total = count[bounds[n]]
	if (total == 0) { print "no observations for route " route > "/dev/stderr"; exit 1 }
	rank = q * total
	for (i = 1; i <= n && count[bounds[i]] < rank; i++) {}
	if (bounds[i] == "+Inf") { print bounds[n - 1]; exit }
	lo = (i == 1) ? 0 : bounds[i - 1]
	below = (i == 1) ? 0 : count[bounds[i - 1]]
	printf "%g\n", lo + (bounds[i] - lo) * (rank - below) / (count[bounds[i]] - below)
}
