#!/usr/bin/env bash
# Stoplight Prism as a validating proxy in front of impressiond: the
# requests below go through `prism proxy docs/openapi.yaml <upstream>
# --errors --cors=false`, which checks each request and the server's
# answer against the document and, with --errors, answers a violation itself (500,
# application/problem+json, an sl-violations header) instead of passing the
# server's answer on. The script fails unless every answer has the status
# the server is expected to give and prism logged no error or warning.
# --cors=false: otherwise prism answers preflights itself and adds CORS
# headers of its own to every answer.
#
# What prism cannot forward is sent straight to impressiond instead and
# only its status checked: methods the document does not list and paths it
# does not list (prism answers those itself, 405 and 404), HEAD on the JSON
# routes (prism tries to parse the empty body as JSON), GET with a body
# (the document gives GET no request body, so prism refuses it) and
# compressed bodies (prism forwards the body it parsed, no longer
# compressed, under the original Content-Encoding). The API tests cover
# all of these against the document (api/contract_test.go).
#
# Used by `make prism`; PRISM is the prism command, BIN the impressiond
# binary, SPEC the document (another one shows what the check catches).
set -euo pipefail
cd "$(dirname "$0")/.."

PRISM=${PRISM:-bin/prism/node_modules/.bin/prism}
BIN=${BIN:-bin/impressiond}
SPEC=${SPEC:-docs/openapi.yaml}

tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT

# wait_for FILE REGEXP: until the log FILE has a line matching REGEXP.
wait_for() {
	for _ in $(seq 600); do
		grep -qE "$2" "$1" && return 0
		sleep 0.1
	done
	echo "timed out waiting for /$2/ in $1:" >&2
	cat "$1" >&2
	return 1
}

"$BIN" -addr 127.0.0.1:0 -data-dir "$tmp/data" -dedup exact -max-body 4096 \
	-admin-token adm -ingest-token ing -cors-origins https://shop.example \
	2>"$tmp/impressiond.log" &
pids+=($!)
wait_for "$tmp/impressiond.log" 'addr=127\.0\.0\.1:[1-9]'
up=http://$(grep -o 'addr=127\.0\.0\.1:[0-9]*' "$tmp/impressiond.log" | head -n1 | cut -d= -f2)

# Prism cannot listen on port 0; ask the kernel for a free port, and try
# again should another process take it before prism binds it.
for attempt in 1 2 3; do
	port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	"$PRISM" proxy "$SPEC" "$up" --errors --cors=false -h 127.0.0.1 -p "$port" >"$tmp/prism.log" 2>&1 &
	ppid=$!
	for _ in $(seq 600); do
		grep -q 'Prism is listening' "$tmp/prism.log" && break
		kill -0 "$ppid" 2>/dev/null || break
		sleep 0.1
	done
	if grep -q 'Prism is listening' "$tmp/prism.log"; then
		pids+=("$ppid")
		break
	fi
	wait "$ppid" 2>/dev/null || true
	[ "$attempt" = 3 ] && { echo "prism did not start:" >&2; cat "$tmp/prism.log" >&2; exit 1; }
done
proxy=http://127.0.0.1:$port

sent=0 direct=0 failed=0

# check WANT BASE METHOD PATH [curl arguments...]: one request, which must
# answer WANT and not be one of prism's own answers.
check() {
	local want=$1 base=$2 method=$3 path=$4
	shift 4
	local head=(-X "$method")
	[ "$method" = HEAD ] && head=(-I)
	local got
	got=$(curl -sS -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' "${head[@]}" "$@" "$base$path" || echo 000)
	if [ "$got" != "$want" ] || grep -qiE '^(sl-violations:|content-type: application/problem\+json)' "$tmp/headers"; then
		echo "FAIL $method $path: got $got, want $want" >&2
		sed 's/^/    /' "$tmp/headers" "$tmp/body" >&2
		echo >&2
		failed=$((failed + 1))
	fi
}
# header NAME VALUE: the last answer has header NAME with VALUE, or none
# with VALUE empty.
header() {
	local got
	got=$(grep -i "^$1:" "$tmp/headers" | head -n1 | cut -d: -f2- | tr -d '\r' | sed 's/^ *//' || true)
	if [ "$got" != "$2" ]; then
		echo "FAIL header $1: got '$got', want '$2'" >&2
		failed=$((failed + 1))
	fi
}
# via: through prism. straight: to impressiond itself.
via() { sent=$((sent + 1)); check "$1" "$proxy" "${@:2}"; }
straight() { direct=$((direct + 1)); check "$1" "$up" "${@:2}"; }

admin=(-H 'Authorization: Bearer adm')
ingest=(-H 'Authorization: Bearer ing')
json=(-H 'Content-Type: application/json')
plain=(-H 'Content-Type: text/plain')
shop=(-H 'Origin: https://shop.example')
pad=$(head -c 5000 /dev/zero | tr '\0' p)

# Campaigns.
via 201 POST /api/v1/campaigns "${admin[@]}" "${json[@]}" -d '{"id":"c1","name":"Spring","start_time":"2020-01-01T00:00:00Z"}'
via 201 POST /api/v1/campaigns "${admin[@]}" "${plain[@]}" -d '{"name":"Sent as text/plain"}'
via 201 POST /api/v1/campaigns "${admin[@]}" "${json[@]}" -d '{"id":"late","name":"Starts at the end of the range","start_time":"2261-12-31T00:00:00Z"}'
via 409 POST /api/v1/campaigns "${admin[@]}" "${json[@]}" -d '{"id":"c1","name":"Again"}'
via 422 POST /api/v1/campaigns "${admin[@]}" "${json[@]}" -d '{"name":"Too early","start_time":"1600-01-01T00:00:00Z"}'
via 401 POST /api/v1/campaigns "${json[@]}" -d '{"name":"No token"}'
via 413 POST /api/v1/campaigns "${admin[@]}" "${json[@]}" -d '{"name":"Big","pad":"'"$pad"'"}'
via 200 GET /api/v1/campaigns "${admin[@]}"
via 200 GET '/api/v1/campaigns?limit=1' "${admin[@]}"
via 200 GET '/api/v1/campaigns?limit=2&after=c1' "${admin[@]}"
via 401 GET /api/v1/campaigns -H 'Authorization: Bearer wrong'
via 200 GET /api/v1/campaigns/c1 "${admin[@]}"
via 404 GET /api/v1/campaigns/nope "${admin[@]}"
via 401 GET /api/v1/campaigns/c1
via 200 GET /api/v1/campaigns/c1/stats "${admin[@]}"
via 404 GET /api/v1/campaigns/nope/stats "${admin[@]}"
via 200 GET /api/v1/campaigns/c1/series "${admin[@]}"
via 200 GET '/api/v1/campaigns/c1/series?window=24h' "${admin[@]}"
via 404 GET /api/v1/campaigns/nope/series "${admin[@]}"
via 200 GET '/api/v1/campaigns/c1/series?window=7d' "${admin[@]}"
via 200 GET '/api/v1/campaigns/c1/series?window=90d' "${admin[@]}"
via 200 GET '/api/v1/campaigns/c1/series?from=2026-01-01T00:00:00Z&step=1d' "${admin[@]}"
via 422 GET '/api/v1/campaigns/c1/series?from=2020-01-01T00:00:00Z&step=1h' "${admin[@]}"
via 200 GET '/api/v1/campaigns?prefix=c' "${admin[@]}"
via 201 POST /api/v1/campaigns "${admin[@]}" "${json[@]}" -d '{"id":"ends","name":"Ends","start_time":"2020-01-01T00:00:00Z","end_time":"2020-02-01T00:00:00Z"}'
via 200 PATCH /api/v1/campaigns/ends "${admin[@]}" "${json[@]}" -d '{"name":"Ended","end_time":null}'
via 422 PATCH /api/v1/campaigns/ends "${admin[@]}" "${json[@]}" -d '{"end_time":"1999-01-01T00:00:00Z"}'
via 404 PATCH /api/v1/campaigns/nope "${admin[@]}" "${json[@]}" -d '{"name":"N"}'
via 204 DELETE /api/v1/campaigns/ends "${admin[@]}"
via 404 DELETE /api/v1/campaigns/ends "${admin[@]}"

# Single impressions.
via 200 POST /api/v1/impressions "${ingest[@]}" "${json[@]}" -d '{"campaign_id":"c1","user_id":"u1","ad_id":"a1"}'
via 200 POST /api/v1/impressions "${ingest[@]}" "${json[@]}" -d '{"campaign_id":"c1","user_id":"u1"}'
via 200 POST /api/v1/impressions "${ingest[@]}" "${plain[@]}" -d '{"campaign_id":"c1","user_id":"beacon"}'
via 200 POST /api/v1/impressions "${ingest[@]}" "${json[@]}" "${shop[@]}" -d '{"campaign_id":"c1","user_id":"u2","ad_id":null,"timestamp":null}'
via 404 POST /api/v1/impressions "${ingest[@]}" "${json[@]}" -d '{"campaign_id":"nope","user_id":"u1"}'
via 422 POST /api/v1/impressions "${ingest[@]}" "${json[@]}" -d '{"campaign_id":"late","user_id":"u1"}'
via 422 POST /api/v1/impressions "${ingest[@]}" "${json[@]}" -d '{"campaign_id":"c1","user_id":"u1","timestamp":"2999-01-01T00:00:00Z"}'
via 401 POST /api/v1/impressions "${json[@]}" -d '{"campaign_id":"c1","user_id":"u1"}'
via 401 POST /api/v1/impressions -H 'Authorization: Bearer adm' "${json[@]}" "${shop[@]}" -d '{"campaign_id":"c1","user_id":"u1"}'
via 413 POST /api/v1/impressions "${ingest[@]}" "${json[@]}" "${shop[@]}" -d '{"campaign_id":"c1","user_id":"u1","pad":"'"$pad"'"}'
header Access-Control-Allow-Origin https://shop.example
via 415 POST /api/v1/impressions "${ingest[@]}" "${json[@]}" -H 'Content-Encoding: br' -d '{"campaign_id":"c1","user_id":"u1"}'
# Valid JSON labelled gzip: the body does not decode.
via 400 POST /api/v1/impressions "${ingest[@]}" "${json[@]}" -H 'Content-Encoding: gzip' -d '{"campaign_id":"c1","user_id":"u1"}'

# Batches: valid and invalid items together are one valid request.
via 200 POST /api/v1/impressions/batch "${ingest[@]}" "${json[@]}" -d '[{"campaign_id":"c1","user_id":"b1"},{"campaign_id":"c1"},{"campaign_id":"nope","user_id":"b2"},{"campaign_id":"c1","user_id":""},{"campaign_id":"c1","user_id":"b1"},{"campaign_id":"c1","user_id":"b3","timestamp":"not a time"}]'
via 200 POST /api/v1/impressions/batch "${ingest[@]}" "${plain[@]}" -d '[{"campaign_id":"c1","user_id":"b4"}]'
via 401 POST /api/v1/impressions/batch "${json[@]}" -d '[{"campaign_id":"c1","user_id":"b5"}]'
via 413 POST /api/v1/impressions/batch "${ingest[@]}" "${json[@]}" -d '[{"campaign_id":"c1","user_id":"b6","pad":"'"$pad"'"}]'
via 415 POST /api/v1/impressions/batch "${ingest[@]}" "${json[@]}" -H 'Content-Encoding: compress' -d '[{"campaign_id":"c1","user_id":"b7"}]'
via 400 POST /api/v1/impressions/batch "${ingest[@]}" "${json[@]}" -H 'Content-Encoding: deflate' -d '[{"campaign_id":"c1","user_id":"b8"}]'

# The pixel.
via 200 GET '/api/v1/pixel.gif?campaign_id=c1&user_id=p1&token=ing'
via 200 GET '/api/v1/pixel.gif?campaign_id=c1&user_id=p1&token=ing' "${shop[@]}"
header Access-Control-Allow-Origin https://shop.example
header X-Impression-Status duplicate
via 200 HEAD '/api/v1/pixel.gif?campaign_id=c1&user_id=p2&token=ing'
via 401 GET '/api/v1/pixel.gif?campaign_id=c1&user_id=p3'
via 401 GET '/api/v1/pixel.gif?campaign_id=c1&user_id=p3&token=wrong'
via 404 GET '/api/v1/pixel.gif?campaign_id=nope&user_id=p4&token=ing'
via 422 GET '/api/v1/pixel.gif?campaign_id=c1&token=ing'
via 422 GET '/api/v1/pixel.gif?campaign_id=c1&user_id=p5&timestamp=yesterday&token=ing'

# CORS preflights, from an allowed origin and from another.
for path in /api/v1/impressions /api/v1/impressions/batch /api/v1/pixel.gif; do
	via 204 OPTIONS "$path" "${shop[@]}" -H 'Access-Control-Request-Method: POST' -H 'Access-Control-Request-Headers: authorization, content-type'
	header Access-Control-Allow-Origin https://shop.example
	via 204 OPTIONS "$path" -H 'Origin: https://elsewhere.example' -H 'Access-Control-Request-Method: POST'
	header Access-Control-Allow-Origin ''
done

# Health and monitoring.
via 200 GET /healthz
via 200 GET /readyz
via 200 GET /metrics
via 200 HEAD /metrics
via 200 GET /
via 200 HEAD /

# What prism cannot forward (see the top of this file).
straight 405 DELETE /healthz
straight 405 PUT /api/v1/campaigns "${admin[@]}"
straight 405 GET /api/v1/impressions
straight 405 POST /api/v1/pixel.gif
straight 404 GET /nope
for path in /healthz /readyz /api/v1/campaigns /api/v1/campaigns/c1 /api/v1/campaigns/c1/stats /api/v1/campaigns/c1/series; do
	straight 200 HEAD "$path" "${admin[@]}"
done
straight 413 GET /healthz -d "$pad"
straight 413 GET '/api/v1/pixel.gif?campaign_id=c1&user_id=p6&token=ing' -d "$pad"
printf '{"campaign_id":"c1","user_id":"gz"}' | gzip >"$tmp/gz"
straight 200 POST /api/v1/impressions "${ingest[@]}" "${json[@]}" -H 'Content-Encoding: gzip' --data-binary @"$tmp/gz"

# Prism logs a violation, and any request it answered itself, as an error
# or a warning.
violations=$(grep -cE '✖|⚠' "$tmp/prism.log" || true)
forwarded=$(grep -o 'has returned [0-9]*' "$tmp/prism.log" | awk '{print $3}' | sort -n | uniq -c | awk '{printf "%s%s×%s", sep, $2, $1; sep = ", "}')
echo "statuses prism forwarded from impressiond: $forwarded"
echo "prism proxy: $sent requests through prism, $direct straight to impressiond; $failed unexpected answers; $violations violations logged by prism"
if [ "$violations" -gt 0 ]; then
	grep -E '✖|⚠' "$tmp/prism.log" >&2
fi
[ "$failed" -eq 0 ] && [ "$violations" -eq 0 ]
