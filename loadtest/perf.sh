#!/usr/bin/env bash
# Runs the vegeta rows of docs/PERFORMANCE.md: for ROUNDS rounds, against a
# fresh impressiond (default flags) on a free loopback port each time:
#   max-rate single impressions, max-rate batches of 1000, and a fixed
#   20,000 req/s for the p99 latency.
# Prints each run's summary lines; the wrk rows come from compare.sh.
# With BASE=<git ref>, every row is run again right after with the
# impressiond of that ref (built into bin/impressiond-base), so a change is
# measured side by side with what it replaces.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}

source loadtest/build.sh
BIN=./bin/impressiond

run() { # name, loadtest attack flags...
	local name=$1 log pid addr
	shift
	log=$(mktemp)
	"$BIN" -addr 127.0.0.1:0 2>"$log" &
	pid=$!
	for _ in $(seq 100); do
		addr=$(grep -o 'addr=127\.0\.0\.1:[0-9]*' "$log" | head -n1 | cut -d= -f2 || true)
		[ -n "$addr" ] && break
		sleep 0.1
	done
	echo "== $name ($BIN): loadtest attack $*"
	./bin/loadtest attack -target "http://$addr" -duration "$DURATION" "$@" 2>/dev/null |
		grep -E '^(requests|throughput|latency)|^ +total'
	kill -TERM "$pid"
	wait "$pid" || true
	rm -f "$log"
	sleep 2 # let TIME_WAIT and caches settle between runs
}

for r in $(seq "$ROUNDS"); do
	echo "### round $r"
	run "single, max rate" -rate 0 -workers 64 -connections 64 -seed "$r"
	run "batch 1000, max rate" -rate 0 -batch 1000 -workers 32 -connections 32 -seed "$r"
	run "single, 20000 req/s" -rate 20000 -workers 8 -connections 8 -seed "$r"
	if [[ -n ${BASE:-} ]]; then
		BIN=./bin/impressiond-base
		run "single, max rate" -rate 0 -workers 64 -connections 64 -seed "$r"
		run "batch 1000, max rate" -rate 0 -batch 1000 -workers 32 -connections 32 -seed "$r"
		run "single, 20000 req/s" -rate 20000 -workers 8 -connections 8 -seed "$r"
		BIN=./bin/impressiond
	fi
done
