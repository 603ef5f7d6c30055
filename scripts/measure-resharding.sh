#!/usr/bin/env bash
# Online resharding under load (results/resharding.md): seeds FLIGHTS flights on FROM
# SQLite shards, serves them, finds the closed-loop capacity of the default mix
# (read=80, departures=15, write=5; flights and airports zipf-skewed, so that writes
# revisit flights whose versions they have learned), then runs the open loop at half of it in
# back-to-back WINDOW-second windows while `flightbench reshard --to TO` runs, with
# quiet windows before and after. Prints one line per window and reshard's report.
#   scripts/measure-resharding.sh                # 1,000,000 flights, 8 -> 16
#   SEEDED=/tmp/pristine-1m scripts/measure-resharding.sh   # a copy of a seeded dataset
#   PG=postgres://postgres@127.0.0.1:5432 FROM=4 TO=8 scripts/measure-resharding.sh
set -euo pipefail
cd "$(dirname "$0")/.."
FLIGHTS=${FLIGHTS:-1000000}
FROM=${FROM:-8}
TO=${TO:-16}
WINDOW=${WINDOW:-2}
NICE=${NICE:-19}
QUIET_WINDOWS=${QUIET_WINDOWS:-5}
. scripts/measure-lib.sh
measure_setup
dir=$work/shards
# SEEDED=DIR: copy a dataset seeded earlier (with the same FLIGHTS and FROM) instead of
# seeding again; the copy is what gets resharded. PG=URL (a server, e.g.
# postgres://postgres@127.0.0.1:5432): seed PostgreSQL databases fbreshard_0, … there
# instead, dropped with the new layout's afterwards.
if [ -n "${PG:-}" ]; then
    "$bin" seed --dir "$dir" --flights "$FLIGHTS" --shards "$FROM" --force --backend postgres \
        --pg-url "$PG/fbreshard" >/dev/null
    drop_pg_reshard() {
        psql "$PG/postgres" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'fbreshard%'" |
            while read -r db; do psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"; done
    }
    trap 'measure_cleanup; drop_pg_reshard' EXIT
elif [ -n "${SEEDED:-}" ]; then
    cp -r "$SEEDED" "$dir"
else
    "$bin" seed --dir "$dir" --flights "$FLIGHTS" --shards "$FROM" --force >/dev/null
fi
backend=$([ -n "${PG:-}" ] && echo PostgreSQL || echo SQLite)
"$bin" serve --dir "$dir" --addr 127.0.0.1:0 --no-admin >"$work/serve.out" 2>"$work/serve.err" &
pid=$!
for _ in $(seq 100); do grep -q listening "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' "$work/serve.out" | head -1)
"$bin" load --target "$url" --dir "$dir" -c 16 -d 5s --warmup 1s --skew zipf --quiet --json "$work/capacity.json" >/dev/null
rate=$(python3 -c "import json,sys; print(int(json.load(open(sys.argv[1]))['achieved_rate'] / 2))" "$work/capacity.json")
echo "# commit $commit; $FLIGHTS flights, $FROM -> $TO $backend shards; capacity $(python3 -c "import json,sys; print(int(json.load(open(sys.argv[1]))['achieved_rate']))" "$work/capacity.json") req/s closed loop (16 connections); open loop at $rate req/s in ${WINDOW} s windows; reshard --nice $NICE"
echo "# machine: $(nproc) cores, not pinned; server: serve's default runtime (per-core, one current-thread runtime per core); load generator on the same cores"
window() {  # window N PHASE
    local start
    start=$(date +%s.%N)
    "$bin" load --target "$url" --dir "$dir" --rate "$rate" -c 16 -d "${WINDOW}s" --skew zipf --quiet --json "$work/w$1.json" >/dev/null
    python3 - "$work/w$1.json" "$1" "$2" "$start" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
status = r["status_counts"]
print(f'{sys.argv[2]:>3} {sys.argv[3]:<7} {float(sys.argv[4]):.1f} {r["achieved_rate"]:9.0f} {r["latency"]["p99_ms"]:8.2f} '
      f'{sum(r["errors"].values()):4d} {status.get("201", 0):6d} {r["write_conflicts"]:5d} {r["unexpected_statuses"]}')
PY
}
echo "# window phase start_unix req/s p99_ms errors writes_201 conflicts unexpected"
# Beside the load: a writer that records every 201, checked on the new layout at the end.
scripts/reshard-write-check.py write "$url" "$work/stop" "$work/acked.json" &
checker=$!
n=0
for _ in $(seq "$QUIET_WINDOWS"); do n=$((n + 1)); window $n before; done
"$bin" reshard --dir "$dir" --to "$TO" --nice "$NICE" --quiet --json >"$work/reshard.json" &
reshard=$!
while kill -0 "$reshard" 2>/dev/null; do n=$((n + 1)); window $n during; done
wait "$reshard"
for _ in $(seq "$QUIET_WINDOWS"); do n=$((n + 1)); window $n after; done
touch "$work/stop"
wait "$checker"
echo "# acknowledged writes:"
scripts/reshard-write-check.py check "$url" "$work/acked.json"
"$bin" load --target "$url" --dir "$dir" -c 16 -d 5s --warmup 1s --skew zipf --quiet --json "$work/capacity-after.json" >/dev/null
echo "# capacity on the new layout: $(python3 -c "import json,sys; print(int(json.load(open(sys.argv[1]))['achieved_rate']))" "$work/capacity-after.json") req/s closed loop (16 connections)"
echo "# reshard report:"
cat "$work/reshard.json"
echo "# serve's messages:"
cat "$work/serve.err"
