#!/usr/bin/env bash
# The server's latency histogram against the load tester's own latency, in
# one run: starts impressiond (exact dedup, in memory) pinned to core 1,
# attacks it from core 0 at RATE requests/s for DURATION, and prints the p50
# and p99 the load tester measured next to what Prometheus's
# histogram_quantile computes from the server's
# impressiond_http_request_duration_seconds over the same run (a scrape
# before subtracted from one after, as rate() would).
#
#   bash loadtest/p99.sh                      # single impressions, 500 req/s
#   BATCH=1000 RATE=100 bash loadtest/p99.sh  # 1000-item batches
#
# Needs taskset (util-linux) and two cores; builds into bin/.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-500}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-8}
BATCH=${BATCH:-0}
route=/api/v1/impressions
extra=()
if [ "$BATCH" -gt 0 ]; then
	route=/api/v1/impressions/batch
	extra=(-batch "$BATCH")
fi
go build -o bin/impressiond ./cmd/impressiond
go build -o bin/loadtest ./loadtest
tmp=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
taskset -c 1 ./bin/impressiond -addr "127.0.0.1:$port" -dedup exact >"$tmp/server.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do curl -fs "127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
curl -fs "127.0.0.1:$port/metrics" >"$tmp/before"
taskset -c 0 ./bin/loadtest attack -target "http://127.0.0.1:$port" -rate "$RATE" -duration "$DURATION" \
	-connections "$CONNS" "${extra[@]}" >"$tmp/attack" 2>&1
curl -fs "127.0.0.1:$port/metrics" >"$tmp/after"
# The load tester prints "latency  p50 293µs  p90 2.21ms  p99 6.58ms ...".
seconds() { awk -v d="$1" 'BEGIN {
	u = d; sub(/^[0-9.]+/, "", u); v = substr(d, 1, length(d) - length(u))
	f = (u == "ns") ? 1e-9 : (u == "µs" || u == "us") ? 1e-6 : (u == "ms") ? 1e-3 : (u == "s") ? 1 : -1
	if (f < 0) { print "unknown unit in " d > "/dev/stderr"; exit 1 }
	printf "%.9f", v * f }'; }
client_p50=$(awk '$1 == "latency" { for (i = 2; i < NF; i++) if ($i == "p50") print $(i + 1) }' "$tmp/attack")
client_p99=$(awk '$1 == "latency" { for (i = 2; i < NF; i++) if ($i == "p99") print $(i + 1) }' "$tmp/attack")
if [ -z "$client_p99" ]; then cat "$tmp/attack" >&2; exit 1; fi
quantile() {
	awk 'NR == FNR { if ($1 ~ /_bucket\{/) a[$1] = $2; next } $1 ~ /_bucket\{/ { print $1, $2 - a[$1] }' "$tmp/before" "$tmp/after" |
		awk -v q="$1" -v route="$route" -f loadtest/histogram_quantile.awk
}
server_p50=$(quantile 0.5)
server_p99=$(quantile 0.99)
awk -v r="$route" -v rate="$RATE" -v b="$BATCH" -v c50="$(seconds "$client_p50")" -v c99="$(seconds "$client_p99")" \
	-v s50="$server_p50" -v s99="$server_p99" 'BEGIN {
	printf "%s at %s req/s (batch %s): load tester p50 %.0f µs p99 %.0f µs; histogram_quantile p50 %.0f µs p99 %.0f µs; p99 ratio %.2f\n",
		r, rate, b, c50 * 1e6, c99 * 1e6, s50 * 1e6, s99 * 1e6, c99 / s99 }'
