#!/usr/bin/env bash
# Profiles benchmarks with pprof (criterion's --profile-time mode) and copies each
# flamegraph into profiles/ as bench-<group>-<arm>.svg (plus the folded stacks).
#
#   scripts/bench-flamegraphs.sh                          # sqlite point reads, 10 s each
#   scripts/bench-flamegraphs.sh postgres/departures 5
#   BENCH=compression scripts/bench-flamegraphs.sh compression/departures_1000/br 5
set -euo pipefail
cd "$(dirname "$0")/.."
filter=${1:-sqlite/point_read}
seconds=${2:-10}
bench=${BENCH:-queries}
marker=$(mktemp)
trap 'rm -f "$marker"' EXIT
cargo bench --bench "$bench" -- --profile-time "$seconds" "$filter"
mkdir -p profiles
count=0
while IFS= read -r svg; do
    # target/criterion/<group>/<arm...>/profile/flamegraph.svg -> bench-<group>-<arm...>
    rel=${svg#target/criterion/}
    name="bench-$(dirname "$(dirname "$rel")" | tr '/' '-')"
    cp "$svg" "profiles/$name.svg"
    cp "${svg%.svg}.folded" "profiles/$name.folded"
    echo "profiles/$name.svg"
    count=$((count + 1))
done < <(find target/criterion -path '*/profile/flamegraph.svg' -newer "$marker")
[ "$count" -gt 0 ] || { echo "error: no flamegraph was written; does the filter match a benchmark?" >&2; exit 1; }
