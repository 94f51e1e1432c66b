#!/usr/bin/env bash
# In-process dedup + count, impressiond's Bloom window against the naive
# baseline, side by side: ROUNDS rounds, each running the two benchmarks one
# right after the other, so a noisy neighbour hits both alike. Prints each
# round's ops/s and ratio, then the median ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-6}
ratios=()
for r in $(seq "$ROUNDS"); do
	out=$(go test -run '^$' -bench 'DedupCount/(impressiond-bloom|naive-baseline$)' -benchtime 1s ./loadtest)
	ours=$(awk '/impressiond-bloom/ { for (i = 1; i < NF; i++) if ($(i+1) == "ops/s") print $i }' <<<"$out")
	naive=$(awk '/naive-baseline-/ { for (i = 1; i < NF; i++) if ($(i+1) == "ops/s") print $i }' <<<"$out")
	ratio=$(awk -v a="$ours" -v b="$naive" 'BEGIN { printf "%.2f", a / b }')
	ratios+=("$ratio")
	printf 'round %d  impressiond-bloom %10.0f ops/s  naive-baseline %10.0f ops/s  ratio %s\n' "$r" "$ours" "$naive" "$ratio"
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{ a[NR] = $1 } END { m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "median ratio %.2f over %d rounds\n", m, NR }'
