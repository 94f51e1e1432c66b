#!/usr/bin/env bash
# burst.sh measures how many fresh pairs impressiond's Bloom dedup takes for
# repeats (and so does not count) when they arrive in bursts. Every run sends
# only pairs never sent before (loadtest attack -burst), so whatever is not
# counted is lost, and compares that with what the target false-positive
# rate allows. Runs, C = CAPACITY and K = SLICES:
#
#   burst C, C/2, C/5, C/K   one burst as fast as possible (TTL 1h)
#   steady then burst        C/2 spread evenly over the first K-1 slices of a
#                            60s TTL, then a burst of C/2 in the last: at most
#                            C pairs per TTL, within the sizing contract
#   consecutive slices       bursts of C/K in three consecutive slices of a
#                            60s TTL, each starting just after a boundary
#
# Each run gets a fresh impressiond (-dedup bloom -dedup-capacity C
# -dedup-fp FP -dedup-slices K, then ARGS) on a kernel-chosen 127.0.0.1 port.
# Every attack is bounded by its pair count, a per-request timeout and
# LIMIT seconds overall; a failed request fails the script.
#
# With BASE=<git ref>, every run is repeated with the impressiond of that ref
# (built into bin/impressiond-base) right after the tree's, and the table
# gets one column group per binary.
#
# Usage: [CAPACITY=1000000] [SLICES=6] [FP=0.001] [BATCH=1000] [BASE=main]
#        [ARGS="-flag value"] bash loadtest/burst.sh
# Requirements: go, coreutils timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
CAPACITY=${CAPACITY:-1000000}
SLICES=${SLICES:-6}
FP=${FP:-0.001}
BATCH=${BATCH:-1000}
LIMIT=${LIMIT:-300}
read -r -a extra <<<"${ARGS:-}"

source loadtest/build.sh
bins=(./bin/impressiond)
if [[ -n ${BASE:-} ]]; then bins+=(./bin/impressiond-base); fi

work=$(mktemp -d)
pid=""
cleanup() {
	[[ -n $pid ]] && kill "$pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

# start_impressiond bin flags...: starts bin on a free loopback port and sets
# pid and addr.
start_impressiond() {
	local bin=$1 log=$work/impressiond.log
	shift
	"$bin" -addr 127.0.0.1:0 -dedup bloom -dedup-capacity "$CAPACITY" -dedup-fp "$FP" -dedup-slices "$SLICES" "$@" "${extra[@]}" 2>"$log" &
	pid=$!
	addr=""
	for _ in $(seq 100); do
		addr=$(grep -o 'addr=127\.0\.0\.1:[0-9]*' "$log" | head -n1 | cut -d= -f2 || true)
		[[ -n $addr ]] && return
		sleep 0.1
	done
	cat "$log" >&2
	exit 1
}

stop_impressiond() {
	kill -TERM "$pid"
	wait "$pid" || true
	pid=""
	sleep 1 # let TIME_WAIT settle between runs
}

# run name server-flags... -- attack-flags...: runs the attack against a
# fresh server of every binary and records each phase's row as
# "name|phase|binary|pairs|counted|undercount|share|allowed".
run() {
	local name=$1 flags=() bin out
	shift
	while [[ $1 != -- ]]; do flags+=("$1"); shift; done
	shift
	for bin in "${bins[@]}"; do
		start_impressiond "$bin" "${flags[@]}"
		echo "== $name ($bin): loadtest attack $*" >&2
		if ! out=$(timeout "$LIMIT" ./bin/loadtest attack -target "http://$addr" -out "$work/out" -fp "$FP" \
			-batch "$BATCH" -workers 8 -connections 8 "$@" 2>"$work/attack.log"); then
			echo "$out" >&2
			tail -n 5 "$work/attack.log" >&2
			exit 1
		fi
		echo "$out" | grep -E '^ +(phase|steady|burst[0-9]+) ' >&2
		echo "$out" | awk -v name="$name" -v bin="$bin" '$1 ~ /^(steady|burst[0-9]+)$/ {
			printf "%s|%s|%s|%s|%s|%s|%s|%s\n", name, $1, bin, $6, $7, $9, $10, $11 }' >>"$work/results"
		stop_impressiond
	done
}

# ms n: n milliseconds as a Go duration, in seconds when whole.
ms() { if (($1 % 1000 == 0)); then echo "$(($1 / 1000))s"; else echo "${1}ms"; fi; }

c=$CAPACITY
slice=$(ms $((60000 / SLICES)))
run "burst C" -- -burst "$c"
run "burst C/2" -- -burst $((c / 2))
run "burst C/5" -- -burst $((c / 5))
run "burst C/$SLICES" -- -burst $((c / SLICES))
run "steady then burst, TTL 60s" -dedup-ttl 60s -- -steady $((c / 2)) -steady-over "$(ms $((60000 - 60000 / SLICES)))" \
	-burst $((c / 2)) -burst-align "$slice"
run "consecutive slices, TTL 60s" -dedup-ttl 60s -- -burst $((c / SLICES)) -bursts 3 -burst-gap "$slice" -burst-align "$slice"

echo
echo "CAPACITY=$CAPACITY, $SLICES slices, -dedup-fp $FP, batch $BATCH; allowed = pairs × fp, rounded up"
echo
awk -F'|' -v nbins="${#bins[@]}" '
{
	key = $1 "|" $2
	if (!(key in seen)) { seen[key] = 1; order[++n] = key; pairs[key] = $4; allowed[key] = $8 }
	cell[key, $3] = sprintf("%s | %s | %s", $5, $6, $7)
	if (!($3 in isbin)) { isbin[$3] = 1; bin[++nb] = $3 }
}
END {
	head = "| workload | phase | pairs |"; rule = "|---|---|---:|"
	for (b = 1; b <= nb; b++) {
		label = nb > 1 ? (bin[b] ~ /base$/ ? "base: " : "tree: ") : ""
		head = head " " label "counted | " label "undercount | " label "share |"; rule = rule "---:|---:|---:|"
	}
	print head " allowed at fp |"; print rule "---:|"
	for (i = 1; i <= n; i++) {
		split(order[i], k, "|")
		line = "| " k[1] " | " k[2] " | " pairs[order[i]] " |"
		for (b = 1; b <= nb; b++) line = line " " cell[order[i], bin[b]] " |"
		print line " " allowed[order[i]] " |"
	}
}' "$work/results"
