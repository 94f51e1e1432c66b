#!/usr/bin/env bash
# redis.sh measures impressiond on a shared Redis (-store redis://) against
# Redis's own ceiling and against impressiond's memory mode, in one sitting:
#
#   redis-benchmark -P 16   SET k 1 NX EX 3600, and a Lua SET NX + INCR
#                           script: what Redis does with the naive pattern
#   impressiond             batches of 1000 and single impressions at the
#                           maximum rate (loadtest attack), for -store memory,
#                           -store redis:// with -dedup exact, and with
#                           -dedup bloom
#
# Each round starts a fresh redis-server (no persistence, as
# redis-benchmark measures it) on a free loopback port, and a fresh
# impressiond for each run. Everything shares this machine's cores: Redis,
# impressiond and the load generator.
#
# Single impressions are measured with wrk too, when it is installed.
#
# With BASE=<git ref>, the Redis rows are also run with the impressiond of
# that ref (built into bin/impressiond-base), interleaved in each round, so
# a change to the store is measured side by side with what it replaces.
#
# Usage: ROUNDS=3 DURATION=10s [BASE=main~1] bash loadtest/redis.sh
# Requirements: go, redis-server and redis-benchmark (apt-get install -y
# redis-server redis-tools), python3 (to pick a free port); wrk optional.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
# Bloom mode sizes its bitmaps per campaign in Redis: 1M pairs per TTL per
# campaign keep the 10 campaigns of the attack at about 3 MB each.
BLOOM_CAPACITY=${BLOOM_CAPACITY:-1000000}

for cmd in go redis-server redis-benchmark redis-cli; do
	command -v "$cmd" >/dev/null || { echo "redis.sh: $cmd not found (apt-get install -y redis-server redis-tools)" >&2; exit 1; }
done

source loadtest/build.sh
BIN=./bin/impressiond

work=$(mktemp -d)
redis_pid=""
cleanup() {
	[[ -n $redis_pid ]] && kill "$redis_pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_redis() {
	port=$(free_port)
	redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
	redis_pid=$!
	for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && return; sleep 0.05; done
	cat "$work/redis.log" >&2
	exit 1
}

# start_impressiond flags...: starts impressiond on a free port with an
# empty Redis and sets pid and addr.
start_impressiond() {
	local log=$work/impressiond.log
	redis-cli -p "$port" flushall >/dev/null
	"$BIN" -addr 127.0.0.1:0 "$@" 2>"$log" &
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

# stop_impressiond name rate unit: stops it and records the rate.
stop_impressiond() {
	kill -TERM "$pid"
	wait "$pid" || true
	printf '%-28s %12s %s\n' "$1" "$2" "$3"
	echo "$1 $round ${2:-0}" >>"$work/results"
	sleep 1
}

# attack name store-flags... -- attack-flags...: loadtest attack's
# impressions/s.
attack() {
	local name=$1 flags=() rate
	shift
	while [[ $1 != -- ]]; do flags+=("$1"); shift; done
	shift
	start_impressiond "${flags[@]}"
	rate=$(./bin/loadtest attack -target "http://$addr" -duration "$DURATION" "$@" 2>/dev/null |
		awk '/^throughput/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^impressions\/s/) print $i }')
	stop_impressiond "$name" "$rate" impressions/s
}

# wrk_single name store-flags...: single impressions at the maximum rate
# with wrk (64 connections), whose own cost is far below vegeta's.
wrk_single() {
	local name=$1 rate
	shift
	command -v wrk >/dev/null || return 0
	start_impressiond "$@"
	curl -s -o /dev/null -X POST "http://$addr/api/v1/campaigns" -d '{"id":"wrk","name":"wrk","start_time":"2020-01-01T00:00:00Z"}'
	rate=$(wrk -t1 -c64 -d"$DURATION" -s loadtest/wrk/track.lua "http://$addr" -- wrk 1000000 2>&1 | awk '/^Requests\/sec:/ { print $2 }')
	stop_impressiond "$name" "$rate" "req/s (wrk)"
}

bench() { # name, redis-benchmark args...: prints "name ops/s"
	local name=$1 rate
	shift
	redis-cli -p "$port" flushall >/dev/null
	rate=$(redis-benchmark -p "$port" -P 16 -c 50 -n 2000000 -r 100000000 -q "$@" 2>/dev/null |
		tr '\r' '\n' | awk '/requests per second/ { for (i = 1; i <= NF; i++) if ($(i+1) == "requests") v = $i } END { print v }')
	printf '%-28s %12s ops/s\n' "$name" "$rate"
	echo "$name $round ${rate:-0}" >>"$work/results"
}

for round in $(seq "$ROUNDS"); do
	echo "### round $round"
	start_redis
	bench setnx SET 'k:__rand_int__' 1 NX EX 3600
	bench lua-setnx-incr EVAL "if redis.call('SET', KEYS[1], 1, 'NX', 'EX', 3600) then return redis.call('INCR', KEYS[2]) end return 0" 2 'k:__rand_int__' total
	url="redis://127.0.0.1:$port/0"
	attack batch-memory -- -rate 0 -batch 1000 -workers 8 -connections 8 -seed "$round"
	attack batch-redis-exact -store "$url" -dedup exact -- -rate 0 -batch 1000 -workers 8 -connections 8 -seed "$round"
	attack batch-redis-bloom -store "$url" -dedup bloom -dedup-capacity "$BLOOM_CAPACITY" -- -rate 0 -batch 1000 -workers 8 -connections 8 -seed "$round"
	attack single-memory -- -rate 0 -workers 64 -connections 64 -seed "$round"
	attack single-redis-exact -store "$url" -dedup exact -- -rate 0 -workers 64 -connections 64 -seed "$round"
	attack single-redis-bloom -store "$url" -dedup bloom -dedup-capacity "$BLOOM_CAPACITY" -- -rate 0 -workers 64 -connections 64 -seed "$round"
	wrk_single wrk-single-memory
	wrk_single wrk-single-redis-exact -store "$url" -dedup exact
	wrk_single wrk-single-redis-bloom -store "$url" -dedup bloom -dedup-capacity "$BLOOM_CAPACITY"
	if [[ -n ${BASE:-} ]]; then
		BIN=./bin/impressiond-base
		attack base-batch-redis-exact -store "$url" -dedup exact -- -rate 0 -batch 1000 -workers 8 -connections 8 -seed "$round"
		attack base-batch-redis-bloom -store "$url" -dedup bloom -dedup-capacity "$BLOOM_CAPACITY" -- -rate 0 -batch 1000 -workers 8 -connections 8 -seed "$round"
		wrk_single base-wrk-single-redis-exact -store "$url" -dedup exact
		wrk_single base-wrk-single-redis-bloom -store "$url" -dedup bloom -dedup-capacity "$BLOOM_CAPACITY"
		BIN=./bin/impressiond
	fi
	kill "$redis_pid"
	wait "$redis_pid" 2>/dev/null || true
	redis_pid=""
done

echo
awk '
function median(name,    n, i, j, t, v) {
	n = count[name]
	for (i = 1; i <= n; i++) v[i] = val[name, i]
	for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
	return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
{ if (!($1 in count)) order[++names] = $1; count[$1]++; val[$1, count[$1]] = $3 }
END {
	for (i = 1; i <= names; i++) { med[order[i]] = median(order[i]); printf "%-28s median %12.0f\n", order[i], med[order[i]] }
	print ""
	printf "batch-redis-exact / setnx         %.2f  (target >= 1.0)\n", med["batch-redis-exact"] / med["setnx"]
	printf "batch-redis-bloom / setnx         %.2f\n", med["batch-redis-bloom"] / med["setnx"]
	printf "single-redis-exact / single-memory %.2f  (target >= 0.5)\n", med["single-redis-exact"] / med["single-memory"]
	printf "single-redis-bloom / single-memory %.2f\n", med["single-redis-bloom"] / med["single-memory"]
	if ("base-batch-redis-exact" in med) {
		printf "against BASE: batch exact %.3f, batch bloom %.3f", med["batch-redis-exact"] / med["base-batch-redis-exact"], med["batch-redis-bloom"] / med["base-batch-redis-bloom"]
		if ("base-wrk-single-redis-exact" in med)
			printf ", wrk single exact %.3f, wrk single bloom %.3f", med["wrk-single-redis-exact"] / med["base-wrk-single-redis-exact"], med["wrk-single-redis-bloom"] / med["base-wrk-single-redis-bloom"]
		print ""
	}
	if ("wrk-single-memory" in med) {
		printf "wrk: single-redis-exact / memory   %.2f  (target >= 0.5)\n", med["wrk-single-redis-exact"] / med["wrk-single-memory"]
		printf "wrk: single-redis-bloom / memory   %.2f\n", med["wrk-single-redis-bloom"] / med["wrk-single-memory"]
	}
}' "$work/results"
