#!/usr/bin/env bash
# writes.sh measures how much a durable impressiond writes to its data
# directory, idle and under a steady load, and what that makes per day. It
# starts one impressiond (-data-dir in a temporary directory, default flags
# otherwise, then ARGS) on a kernel-chosen 127.0.0.1 port, creates the load
# tester's campaigns, lets the first snapshot be written, then reads the
# server's own counters (impressiond_wal_bytes_total +
# impressiond_snapshot_bytes_total) and the kernel's (write_bytes in
# /proc/PID/io, bytes sent to the block layer; 0 on tmpfs) over two phases:
#
#   idle     IDLE seconds without a request
#   steady   STEADY seconds at RATE single impressions per second
#
# With BASE=<git ref>, the same phases run against that ref's impressiond
# too, right after, for a side-by-side table.
#
# Usage: [IDLE=180] [STEADY=180] [RATE=2000] [BASE=ref] [ARGS="-flag value"]
#        bash loadtest/writes.sh
# Requirements: go, curl, Linux /proc.
set -euo pipefail
cd "$(dirname "$0")/.."
IDLE=${IDLE:-180}
STEADY=${STEADY:-180}
RATE=${RATE:-2000}
read -r -a extra <<<"${ARGS:-}"

source loadtest/build.sh
bins=(./bin/impressiond)
if [[ -n ${BASE:-} ]]; then bins+=(./bin/impressiond-base); fi

work=$(mktemp -d -p "${TMPDIR:-/var/tmp}")
pid=""
cleanup() {
	[[ -n $pid ]] && kill "$pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

metric() { curl -s "http://$addr/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
# written prints the server's count of data-directory bytes and the
# kernel's count of bytes written to storage.
written() {
	local wal snap
	wal=$(metric impressiond_wal_bytes_total)
	snap=$(metric impressiond_snapshot_bytes_total)
	echo "$(( ${wal:-0} + ${snap:-0} )) $(awk '$1 == "write_bytes:" { print $2 }' "/proc/$pid/io")"
}
per_day() { awk -v b="$1" -v s="$2" 'BEGIN { d = b * 86400 / s; if (d >= 1e9) printf "%.1f GB", d / 1e9; else if (d >= 1e6) printf "%.1f MB", d / 1e6; else printf "%.0f B", d }'; }

printf '| binary | phase | seconds | server-counted bytes | kernel write_bytes | per day (server count) |\n|---|---|---|---|---|---|\n'
for bin in "${bins[@]}"; do
	rm -rf "$work/data" && mkdir -p "$work/data"
	"$bin" -addr 127.0.0.1:0 -data-dir "$work/data" "${extra[@]}" 2>"$work/log" &
	pid=$!
	addr=""
	for _ in $(seq 100); do
		addr=$(grep -o 'addr=127\.0\.0\.1:[0-9]*' "$work/log" | head -n1 | cut -d= -f2 || true)
		[[ -n $addr ]] && break
		sleep 0.1
	done
	[[ -n $addr ]] || { cat "$work/log"; exit 1; }
	# A short attack creates the campaigns and makes the first snapshot due.
	./bin/loadtest attack -target "http://$addr" -rate 100 -duration 1s -out "$work/out" >/dev/null
	for _ in $(seq 150); do
		[[ $(metric impressiond_snapshot_last_success_timestamp_seconds) != 0 ]] && break
		sleep 1
	done
	read -r s0 k0 < <(written)
	sleep "$IDLE"
	read -r s1 k1 < <(written)
	printf '| %s | idle | %d | %d | %d | %s |\n' "$bin" "$IDLE" $((s1 - s0)) $((k1 - k0)) "$(per_day $((s1 - s0)) "$IDLE")"
	./bin/loadtest attack -target "http://$addr" -rate "$RATE" -duration "${STEADY}s" -out "$work/out" >/dev/null
	read -r s2 k2 < <(written)
	printf '| %s | steady %d/s | %d | %d | %d | %s |\n' "$bin" "$RATE" "$STEADY" $((s2 - s1)) $((k2 - k1)) "$(per_day $((s2 - s1)) "$STEADY")"
	kill "$pid" && wait "$pid" 2>/dev/null || true
	pid=""
done
