#!/usr/bin/env bash
# Measures `flightbench seed` time and on-disk size for FLIGHTS flights in SHARDS shards,
# on SQLite and on PostgreSQL, RUNS times each, and writes results/seeding.md.
#
#   scripts/measure-seed.sh                      # 1,000,000 flights, 8 shards, 3 runs
#   FLIGHTS=100000 RUNS=1 scripts/measure-seed.sh
#
# PostgreSQL: PG_URL names the server and a base database name; the script creates and
# drops PG_URL's NAME_0 … NAME_{SHARDS-1}.
set -euo pipefail
cd "$(dirname "$0")/.."
FLIGHTS=${FLIGHTS:-1000000}
SHARDS=${SHARDS:-8}
RUNS=${RUNS:-3}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/fbmeasure}
OUT=${OUT:-results/seeding.md}
pg_name=${PG_URL##*/}
pg_server=${PG_URL%/*}

cargo build --release --quiet
bin=target/release/flightbench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Runs one seed; prints the seconds flightbench reported.
seed_once() {
    local log="$work/seed.log"
    "$bin" seed --quiet --force --flights "$FLIGHTS" --shards "$SHARDS" "$@" 2>"$log" || { cat "$log" >&2; exit 1; }
    sed -n 's/.* in \([0-9.]*\) s;.*/\1/p' "$log"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo "SQLite: $RUNS × $FLIGHTS flights into $SHARDS shards" >&2
sqlite_times=()
for _ in $(seq "$RUNS"); do sqlite_times+=("$(seed_once --dir "$work/sqlite")"); done
sqlite_bytes=$(du -sb "$work/sqlite" | cut -f1)
events=$(sed -n 's/.*"events": \([0-9]*\).*/\1/p' "$work/sqlite/manifest.json")

echo "PostgreSQL: $RUNS × $FLIGHTS flights into $SHARDS databases" >&2
pg_times=()
for _ in $(seq "$RUNS"); do pg_times+=("$(seed_once --dir "$work/pg" --backend postgres --pg-url "$PG_URL")"); done
pg_bytes=$(psql "$pg_server/postgres" -Atc "SELECT sum(pg_database_size(datname)) FROM pg_database WHERE datname ~ '^${pg_name}_[0-9]+\$'")
for i in $(seq 0 $((SHARDS - 1))); do psql "$pg_server/postgres" -qc "DROP DATABASE IF EXISTS \"${pg_name}_$i\" WITH (FORCE)"; done

sqlite_median=$(printf '%s\n' "${sqlite_times[@]}" | median)
pg_median=$(printf '%s\n' "${pg_times[@]}" | median)
mib() { awk -v b="$1" 'BEGIN {printf "%.0f", b / 1048576}'; }
ratio=$(awk -v a="$pg_median" -v b="$sqlite_median" 'BEGIN {printf "%.1f", a / b}')

cat >"$OUT" <<MD
# Seeding: $FLIGHTS flights into $SHARDS shards

| backend | seed time, median of $RUNS (s) | all runs (s) | on disk |
|---|---|---|---|
| SQLite (WAL, synchronous=NORMAL) | $sqlite_median | ${sqlite_times[*]} | $(mib "$sqlite_bytes") MiB |
| PostgreSQL 15 (monthly partitions) | $pg_median | ${pg_times[*]} | $(mib "$pg_bytes") MiB |

PostgreSQL took ${ratio}× as long as SQLite in this run. Rows: $FLIGHTS flights, $FLIGHTS
status rows, $events delay events. Times are what \`flightbench seed\` reports (data
generation, load, index build, ANALYZE; not database creation). SQLite size is the
shard directory (\`du -sb\`); PostgreSQL size is \`sum(pg_database_size)\` over the shard
databases, which includes each empty database's ~7.5 MiB catalog.

## How it ran

- Command: \`FLIGHTS=$FLIGHTS SHARDS=$SHARDS RUNS=$RUNS scripts/measure-seed.sh\`, which runs
  \`flightbench seed --quiet --force --flights $FLIGHTS --shards $SHARDS --dir DIR\` and
  \`… --backend postgres --pg-url $PG_URL\`
- Runtime shape: SQLite seeding uses one writer thread per core ($(nproc) here) pulling
  shards from a queue; PostgreSQL seeding runs the $SHARDS shard loads concurrently on a
  multi-thread tokio runtime ($(nproc) workers) with generation on the blocking pool,
  against a PostgreSQL server on the same machine. No CPU pinning.
- Commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml || echo " (with uncommitted changes)")
- Toolchain: $(rustc -V)
- Build: release profile (fat LTO, codegen-units = 1)
- CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB
- PostgreSQL: $(psql "$pg_server/postgres" -Atc 'SHOW server_version')
- Date: $(date -u +%Y-%m-%dT%H:%MZ)
MD
echo "wrote $OUT" >&2
