#!/usr/bin/env bash
# Smoke test: start impressiond in exact mode on a free loopback port, run a
# short attack of single impressions and one of batches against it, and fail
# unless every request succeeded and every count is exact. Used by
# `make loadtest`; extra arguments go to both attacks.
set -euo pipefail
cd "$(dirname "$0")/.."

go build -o bin/impressiond ./cmd/impressiond
go build -o bin/loadtest ./loadtest

log=$(mktemp)
./bin/impressiond -addr 127.0.0.1:0 -dedup exact 2>"$log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"' EXIT

addr=
for _ in $(seq 100); do
	addr=$(grep -o 'addr=127\.0\.0\.1:[0-9]*' "$log" | head -n1 | cut -d= -f2 || true)
	[ -n "$addr" ] && break
	sleep 0.1
done
if [ -z "$addr" ]; then
	echo "impressiond did not start:" >&2
	cat "$log" >&2
	exit 1
fi

./bin/loadtest attack -target "http://$addr" -duration "${DURATION:-5s}" -rate "${RATE:-2000}" -strict "$@"
./bin/loadtest attack -target "http://$addr" -duration 3s -rate 20 -batch 500 -seed 2 -strict "$@"

kill -TERM "$pid"
wait "$pid"
echo "smoke test passed: every request succeeded and every count was exact"
