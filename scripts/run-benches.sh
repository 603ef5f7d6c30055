#!/usr/bin/env bash
# Runs every criterion bench on the full bench dataset (1,000,000 flights, 8 shards,
# SQLite and PostgreSQL; built once, then cached under target/tmp/bench-data) and
# writes results/benchmarks.md. Extra arguments go to criterion, e.g. a filter.
#
#   scripts/run-benches.sh
#   taskset -c 0 scripts/run-benches.sh sqlite/point_read    # pinned to one core
set -euo pipefail
cd "$(dirname "$0")/.."
for bench in queries compression routing events; do
    cargo bench --bench "$bench" -- "$@"
done
cargo run --release --quiet -- bench-report --command "scripts/run-benches.sh $*"
