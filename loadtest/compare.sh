#!/usr/bin/env bash
# compare.sh measures impressiond's single-impression throughput against two
# baselines built from loadtest/baseline:
#
#   floor        a fasthttp server that only replies: the most any fasthttp
#                service can reach on this machine with this load generator
#   nethttp      the common naive design: net/http, encoding/json and one
#                mutex around a map of (campaign, user) -> expiry
#   impressiond  the service itself (bin/impressiond)
#
# Each round starts every server in turn, pinned to CPU 1 with taskset, and
# drives it with wrk pinned to CPU 0, so the servers get the same single core
# and never compete with the load generator. Rounds are interleaved (floor,
# nethttp, impressiond, floor, ...) so that drift in the machine's speed
# affects all three alike. At the end it prints each round's requests per
# second, the medians and the ratios of impressiond to each baseline.
#
# With BASE=<git ref> it compares impressiond with the impressiond of that
# ref instead (built into bin/impressiond-base), both with the same flags:
# a change measured side by side with what it replaces.
#
# With PERSISTENCE=1 it compares impressiond with itself instead: memory
# only, -data-dir with the default -fsync-interval 1s, and -fsync-interval 0
# (each data directory fresh, under a temporary directory), and prints what
# persistence costs.
#
# Usage (from anywhere in the repository):
#
#   loadtest/compare.sh
#   ROUNDS=5 DURATION=30s loadtest/compare.sh
#   IMPRESSIOND_ARGS="-dedup exact" loadtest/compare.sh
#   PERSISTENCE=1 loadtest/compare.sh
#   BASE=v1.2.0 ROUNDS=7 loadtest/compare.sh
#
# Environment:
#
#   ROUNDS            rounds per server (default 3)
#   DURATION          wrk duration of each run (default 10s)
#   CONNECTIONS       wrk connections (default 64)
#   USERS             distinct users cycled over by track.lua (default 1000000)
#   IMPRESSIOND_ARGS  extra flags for impressiond (default none)
#   PERSISTENCE       1 to compare persistence off, fsync 1s and fsync 0
#   BASE              a git ref to compare impressiond with
#   FLOOR_PORT, NETHTTP_PORT, IMPRESSIOND_PORT
#                     ports on 127.0.0.1 (defaults 8081, 8082, 8080)
#
# Requirements: go, curl, awk, wrk (apt-get install -y wrk), taskset
# (util-linux) and at least two CPUs. Every server listens on 127.0.0.1 and
# every request goes there.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
USERS=${USERS:-1000000}
IMPRESSIOND_ARGS=${IMPRESSIOND_ARGS:-}
FLOOR_PORT=${FLOOR_PORT:-8081}
NETHTTP_PORT=${NETHTTP_PORT:-8082}
IMPRESSIOND_PORT=${IMPRESSIOND_PORT:-8080}

PERSISTENCE=${PERSISTENCE:-0}
BASE=${BASE:-}

readonly HOST=127.0.0.1
if [[ -n $BASE ]]; then
	readonly SERVERS=(base impressiond)
elif [[ $PERSISTENCE == 1 ]]; then
	readonly SERVERS=(memory fsync-1s fsync-0)
else
	readonly SERVERS=(floor nethttp impressiond)
fi
readonly CAMPAIGN=wrk

die() {
	echo "compare.sh: $*" >&2
	exit 1
}

# need checks that a command exists, printing how to get it if not.
need() {
	command -v "$1" >/dev/null 2>&1 || die "$1 not found; $2"
}

need go "install Go 1.26 or newer from https://go.dev/dl/"
need curl "install it with: apt-get install -y curl"
need awk "install it with: apt-get install -y gawk"
need wrk "install it with: apt-get install -y wrk (or build it from https://github.com/wg/wrk)"
need taskset "it is part of util-linux: apt-get install -y util-linux"

[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, got '$ROUNDS'"
cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
((cpus >= 2)) || die "needs at least two CPUs (server on CPU 1, wrk on CPU 0); this machine has $cpus"

cd "$(dirname "${BASH_SOURCE[0]}")/.."

read -r -a extra_args <<<"$IMPRESSIOND_ARGS"

echo "building bin/impressiond, bin/baseline-floor, bin/baseline-nethttp"
go build -o bin/impressiond ./cmd/impressiond
go build -o bin/baseline-floor ./loadtest/baseline/floor
go build -o bin/baseline-nethttp ./loadtest/baseline/nethttp
if [[ -n $BASE ]]; then
	echo "building bin/impressiond-base from $BASE"
	basetree=$(mktemp -d)
	git worktree add -q --detach "$basetree" "$BASE"
	(cd "$basetree" && go build -o "$OLDPWD/bin/impressiond-base" ./cmd/impressiond)
	git worktree remove --force "$basetree"
fi

work=$(mktemp -d)
server_pid=""
cleanup() {
	if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_of() {
	case $1 in
	floor) echo "$FLOOR_PORT" ;;
	nethttp) echo "$NETHTTP_PORT" ;;
	*) echo "$IMPRESSIOND_PORT" ;;
	esac
}

# start_server launches $1 on CPU 1 and sets server_pid. taskset execs the
# server, so the pid is the server's own.
start_server() {
	local name=$1 addr=$HOST:$2 log=$3
	case $name in
	floor) taskset -c 1 bin/baseline-floor -addr "$addr" >"$log" 2>&1 & ;;
	nethttp) taskset -c 1 bin/baseline-nethttp -addr "$addr" >"$log" 2>&1 & ;;
	base) taskset -c 1 bin/impressiond-base -addr "$addr" "${extra_args[@]}" >"$log" 2>&1 & ;;
	impressiond | memory) taskset -c 1 bin/impressiond -addr "$addr" "${extra_args[@]}" >"$log" 2>&1 & ;;
	fsync-1s) taskset -c 1 bin/impressiond -addr "$addr" -data-dir "$log.data" "${extra_args[@]}" >"$log" 2>&1 & ;;
	fsync-0) taskset -c 1 bin/impressiond -addr "$addr" -data-dir "$log.data" -fsync-interval 0 "${extra_args[@]}" >"$log" 2>&1 & ;;
	esac
	server_pid=$!
}

# wait_ready polls until the server answers 200 on /healthz (the floor
# answers 200 to anything), for up to 15 seconds.
wait_ready() {
	local name=$1 port=$2 log=$3 i
	for ((i = 0; i < 150; i++)); do
		if ! kill -0 "$server_pid" 2>/dev/null; then
			cat "$log" >&2
			die "$name exited before it was ready"
		fi
		if curl -fsS -o /dev/null --max-time 1 "http://$HOST:$port/healthz" 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	cat "$log" >&2
	die "$name did not answer on $HOST:$port within 15s"
}

stop_server() {
	kill -TERM "$server_pid"
	wait "$server_pid" || die "$1 exited with status $? on SIGTERM"
	server_pid=""
}

run_one() {
	local name=$1 round=$2 port log out code rps
	port=$(port_of "$name")
	log=$work/$name-$round.log
	out=$work/$name-$round.wrk

	if curl -s -o /dev/null --max-time 1 "http://$HOST:$port/" 2>/dev/null; then
		die "something already listens on $HOST:$port; free it or set ${name^^}_PORT"
	fi
	start_server "$name" "$port" "$log"
	wait_ready "$name" "$port" "$log"

	code=$(curl -sS -o "$work/create.out" -w '%{http_code}' --max-time 5 \
		-X POST "http://$HOST:$port/api/v1/campaigns" \
		-H 'Content-Type: application/json' \
		-d "{\"id\":\"$CAMPAIGN\",\"name\":\"$CAMPAIGN\",\"start_time\":\"2020-01-01T00:00:00Z\"}")
	if [[ $code != 201 ]]; then
		cat "$work/create.out" >&2
		die "$name answered $code to the campaign creation, want 201"
	fi

	taskset -c 0 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -s loadtest/wrk/track.lua \
		"http://$HOST:$port" -- "$CAMPAIGN" "$USERS" >"$out" 2>&1 ||
		{ cat "$out" >&2; die "wrk failed against $name"; }
	stop_server "$name"

	rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
	[[ -n $rps ]] || { cat "$out" >&2; die "no Requests/sec in wrk's output for $name"; }
	printf 'round %d  %-12s %12.0f req/s\n' "$round" "$name" "$rps"
	if grep -q 'Non-2xx or 3xx responses' "$out"; then
		echo "warning: $name round $round: $(grep 'Non-2xx or 3xx responses' "$out" | sed 's/^ *//')" >&2
	fi
	if grep -q 'Socket errors' "$out"; then
		echo "warning: $name round $round: $(grep 'Socket errors' "$out" | sed 's/^ *//')" >&2
	fi
	echo "$name $round $rps" >>"$work/results"
}

echo "$ROUNDS round(s) of $DURATION, wrk -t1 -c$CONNECTIONS on CPU 0, server on CPU 1, $USERS users"
[[ -z $IMPRESSIOND_ARGS ]] || echo "impressiond flags: $IMPRESSIOND_ARGS"
for ((round = 1; round <= ROUNDS; round++)); do
	for name in "${SERVERS[@]}"; do
		run_one "$name" "$round"
	done
done

echo
awk -v rounds="$ROUNDS" -v order="${SERVERS[*]}" '
function median(name,    n, i, j, t, v) {
	n = count[name]
	for (i = 1; i <= n; i++) v[i] = rps[name, i]
	for (i = 2; i <= n; i++) {
		t = v[i]
		for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]
		v[j + 1] = t
	}
	return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
{ count[$1]++; rps[$1, $2] = $3 }
END {
	ns = split(order, names, " ")
	printf "%-12s", "server"
	for (r = 1; r <= rounds; r++) printf " %12s", "round " r
	printf " %12s\n", "median"
	for (s = 1; s <= ns; s++) {
		name = names[s]
		printf "%-12s", name
		for (r = 1; r <= rounds; r++) printf " %12.0f", rps[name, r]
		med[name] = median(name)
		printf " %12.0f\n", med[name]
	}
	print ""
	if ("base" in med) {
		printf "impressiond/base     %.3f  (%+.1f%%)\n", med["impressiond"] / med["base"], 100 * (med["impressiond"] / med["base"] - 1)
	} else if ("memory" in med) {
		printf "fsync-1s/memory      %.3f  (persistence costs %.1f%%)\n", med["fsync-1s"] / med["memory"], 100 * (1 - med["fsync-1s"] / med["memory"])
		printf "fsync-0/memory       %.3f  (persistence costs %.1f%%)\n", med["fsync-0"] / med["memory"], 100 * (1 - med["fsync-0"] / med["memory"])
	} else {
		printf "impressiond/floor    %.2f\n", med["impressiond"] / med["floor"]
		printf "impressiond/nethttp  %.2f\n", med["impressiond"] / med["nethttp"]
	}
}' "$work/results"
