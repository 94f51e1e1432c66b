# histogram_quantile.awk computes, from one /metrics scrape, the quantile q
# of impressiond_http_request_duration_seconds for one route, the way
# Prometheus's histogram_quantile does: find the bucket holding rank
# q × count, interpolate linearly inside it (from 0 for the first bucket),
# and answer the highest finite bound if the rank falls in +Inf. Over a
# whole scrape it is the quantile since start-up, which a load test on a
# fresh server makes the quantile of the test.
#
#   curl -s http://127.0.0.1:8080/metrics |
#     awk -v q=0.99 -v route=/api/v1/impressions -f loadtest/histogram_quantile.awk
BEGIN { if (q == "") q = 0.99; if (route == "") route = "/api/v1/impressions" }
index($0, "impressiond_http_request_duration_seconds_bucket{") == 1 && index($0, "route=\"" route "\"") {
	match($0, /le="[^"]*"/)
	le = substr($0, RSTART + 4, RLENGTH - 5)
	n++
	bound[n] = (le == "+Inf") ? "+Inf" : le + 0
	count[n] = $NF + 0
}
END {
	if (n == 0 || count[n] == 0) { print "no observations for route " route > "/dev/stderr"; exit 1 }
	rank = q * count[n]
	for (i = 1; i <= n && count[i] < rank; i++) {}
	if (bound[i] == "+Inf") { print bound[n - 1]; exit }
	lo = (i == 1) ? 0 : bound[i - 1]
	below = (i == 1) ? 0 : count[i - 1]
	printf "%g\n", lo + (bound[i] - lo) * (rank - below) / (count[i] - below)
}
