#!/usr/bin/env bash
# The serve-time frequency check against its latency target, in one run:
# starts impressiond (default flags, then IMPRESSIOND_ARGS) pinned to core 1
# on a kernel-chosen 127.0.0.1 port, and from core 0 runs
# "loadtest attack -workload frequency -strict": 100 campaigns capped at
# 3/1h and 10/24h, a warm-up of impressions of 1000 users, then RATE
# requests/s for DURATION, each asking for one user about every campaign.
# The timed requests go out open loop through fasthttp's client (see
# loadtest/openloop.go: vegeta's net/http client alone has a p99 of several
# milliseconds at this rate and answer size), each request's latency
# counted from the time it was due, so queueing in the server counts.
# Every answer is checked against the warm-up (one item per id in request
# order, no count below the impressions tracked, allowed exactly when every
# count is under its max). It prints the p99 the load tester measured next
# to the 1 ms target, and PASS only if the p99 meets it and no request
# failed or answer broke the contract; FAIL exits 1.
#
#   bash loadtest/frequency.sh                               # 5000 req/s for 10s
#   RATE=2000 DURATION=30s bash loadtest/frequency.sh
#   IMPRESSIOND_ARGS="-dedup exact" bash loadtest/frequency.sh
#   IMPRESSIOND_BIN=bin/impressiond-old bash loadtest/frequency.sh
#   LOADTEST_ARGS="-candidates 20 -unknown 2" bash loadtest/frequency.sh
#
# The report, the results files and the HTML latency plots go to OUT
# (default loadtest/out). Needs taskset (util-linux) and two cores; builds
# into bin/. The attack passes no token, like every attack: do not give
# impressiond -admin-token or -ingest-token here.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-5000}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-8}
OUT=${OUT:-loadtest/out}
TARGET_US=1000
read -r -a server_args <<<"${IMPRESSIOND_ARGS:-}"
read -r -a attack_args <<<"${LOADTEST_ARGS:-}"

command -v taskset >/dev/null || { echo "frequency.sh: taskset not found; it is part of util-linux" >&2; exit 1; }
cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
((cpus >= 2)) || { echo "frequency.sh: needs two cores (server on 1, load tester on 0); this machine has $cpus" >&2; exit 1; }

# IMPRESSIOND_BIN runs another build (say, of an older commit) against the
# same load tester: a change measured side by side with what it replaces.
server=${IMPRESSIOND_BIN:-bin/impressiond}
[[ -n ${IMPRESSIOND_BIN:-} ]] || go build -o bin/impressiond ./cmd/impressiond
go build -o bin/loadtest ./loadtest
mkdir -p "$OUT"
tmp=$(mktemp -d)
pid=""
cleanup() {
	[[ -n $pid ]] && kill "$pid" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

# taskset execs the server, so $! is the server's own pid. Port 0 lets the
# kernel choose a free port; the server logs the one it got.
taskset -c 1 "$server" -addr 127.0.0.1:0 "${server_args[@]}" 2>"$tmp/server.log" &
pid=$!
addr=""
for _ in $(seq 100); do
	addr=$(grep "impressiond starting" "$tmp/server.log" | grep -o ' addr=127\.0\.0\.1:[0-9]*' | head -n1 | cut -d= -f2 || true)
	[[ -n $addr ]] && curl -fs "http://$addr/readyz" >/dev/null && break
	addr=""
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
if [[ -z $addr ]]; then
	cat "$tmp/server.log" >&2
	echo "frequency.sh: impressiond did not get ready" >&2
	exit 1
fi

status=0
taskset -c 0 ./bin/loadtest attack -workload frequency -strict -target "http://$addr" -rate "$RATE" -duration "$DURATION" \
	-connections "$CONNS" -out "$OUT" "${attack_args[@]}" >"$tmp/attack" 2>"$tmp/attack.log" || status=$?
kill -TERM "$pid"
wait "$pid" || echo "frequency.sh: impressiond exited with status $? on SIGTERM" >&2
pid=""
cat "$tmp/attack"
cp "$tmp/attack" "$OUT/frequency.txt"

# The load tester prints "latency  p50 293µs  p90 2.21ms  p99 6.58ms ...".
seconds() { awk -v d="$1" 'BEGIN {
	u = d; sub(/^[0-9.]+/, "", u); v = substr(d, 1, length(d) - length(u))
	f = (u == "ns") ? 1e-9 : (u == "µs" || u == "us") ? 1e-6 : (u == "ms") ? 1e-3 : (u == "s") ? 1 : -1
	if (f < 0) { print "unknown unit in " d > "/dev/stderr"; exit 1 }
	printf "%.9f", v * f }'; }
p99=$(awk '$1 == "latency" { for (i = 2; i < NF; i++) if ($i == "p99") print $(i + 1) }' "$tmp/attack")
if [[ -z $p99 ]]; then
	tail -n 5 "$tmp/attack.log" >&2
	echo "FAIL: the attack printed no report (exit status $status)"
	exit 1
fi
if ((status != 0)); then
	# -strict's verdict: failed requests or answers that broke the contract.
	grep -v '^ *[0-9]*s  sent' "$tmp/attack.log" | tail -n 5 >&2
fi
awk -v rate="$RATE" -v p99="$(seconds "$p99")" -v target="$TARGET_US" -v status="$status" 'BEGIN {
	us = p99 * 1e6
	verdict = (us <= target && status == 0) ? "PASS" : "FAIL"
	why = ""
	if (us > target) why = why ", p99 above the target"
	if (status != 0) why = why ", failed requests or wrong answers (see above)"
	printf "POST /api/v1/frequency at %s req/s: p99 %.0f µs, target %d µs: %s%s\n", rate, us, target, verdict, why
	exit verdict == "PASS" ? 0 : 1 }'
