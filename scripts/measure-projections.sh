#!/usr/bin/env bash
# The figures in results/projections.md: what the event sequence costs appends, how
# fast the runner replays (rebuilds), how far it lags under writes, and the board read
# model against the scatter-gather departures.
#
#   scripts/measure-projections.sh sequence BEFORE_BIN   # appends: BEFORE_BIN (a build
#                                                        # without the sequence) vs this
#   scripts/measure-projections.sh runner                # appends with the in-process runner on vs off
#   scripts/measure-projections.sh rebuild [FLIGHTS]     # rebuild rate, SQLite and PostgreSQL
#   scripts/measure-projections.sh lag RATE              # runner lag under RATE writes/s
#   scripts/measure-projections.sh board                 # board vs departures, 16 shards
#
# Each prints one line per round; rounds interleave the arms (ABAB) so drift on this
# shared machine falls on both. PostgreSQL: the local server, databases fbproj_*
# (dropped at the end). Nothing is pinned; the server runs its default runtime shape.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/measure-lib.sh
RUN=${RUN:-5}
ROUNDS=${ROUNDS:-3}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
measure_setup

# Starts `serve` (binary $1, dataset $2, more flags after) and sets pid and url.
start_server() {
    local server=$1 dir=$2
    shift 2
    # Emptied here, before the server starts: the wait below must not read the
    # previous server's address before the new server's shell truncates the file.
    : >"$work/serve.out"
    "$server" serve --addr 127.0.0.1:0 --dir "$dir" --no-admin --cache off "$@" >"$work/serve.out" 2>"$work/serve.err" &
    pid=$!
    url=$(wait_for_url "$work/serve.out" "$work/serve.err" 100)
}
stop_server() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

# req/s, p99 ms and acknowledged writes of one closed-loop write-only run.
write_load() { # DIR [BINARY: the one whose manifest format DIR has]
    "${2:-$bin}" load --target "$url" --dir "$1" --mix write=100 -c 16 --quiet --warmup 1s -d "${RUN}s" \
        --json "$work/load.json" >/dev/null
    python3 - "$work/load.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{r['achieved_rate']:.0f} {r['latency']['p99_ms']:.2f} {r['status_counts'].get('201', 0)}")
PY
}

case "${1:-}" in
sequence)
    before=${2:?the binary of a build without the event sequence}
    for backend in sqlite postgres; do
        for arm in before after; do
            b=$bin; [ "$arm" = before ] && b=$before
            if [ "$backend" = sqlite ]; then
                "$b" seed --dir "$work/$arm-$backend" --quiet >/dev/null
            else
                drop_pg "fbproj_$arm"
                "$b" seed --dir "$work/$arm-$backend" --quiet --backend postgres --pg-url "$PG/fbproj_$arm" >/dev/null
            fi
        done
        echo "# $backend: write=100, 16 connections, ${RUN}s per run; req/s p99_ms acknowledged, before | after"
        for round in $(seq "$ROUNDS"); do
            line="round $round:"
            for arm in before after; do
                b=$bin; flags=(--projector off); [ "$arm" = before ] && { b=$before; flags=(); }
                start_server "$b" "$work/$arm-$backend" "${flags[@]}"
                line="$line $arm $(write_load "$work/$arm-$backend" "$b")"
                stop_server
            done
            echo "$line"
        done
    done
    drop_pg fbproj_before
    drop_pg fbproj_after
    ;;
runner)
    for backend in sqlite postgres; do
        if [ "$backend" = sqlite ]; then
            "$bin" seed --dir "$work/$backend" --quiet >/dev/null
        else
            drop_pg fbproj_rn
            "$bin" seed --dir "$work/$backend" --quiet --backend postgres --pg-url "$PG/fbproj_rn" >/dev/null
        fi
        echo "# $backend: write=100, 16 connections, ${RUN}s per run; req/s p99_ms acknowledged, runner off | in-process"
        for round in $(seq "$ROUNDS"); do
            line="round $round:"
            for mode in off in-process; do
                start_server "$bin" "$work/$backend" --projector "$mode"
                line="$line $mode $(write_load "$work/$backend")"
                stop_server
                # Project what the run wrote, so no arm starts with a backlog.
                "$bin" project --once --quiet --dir "$work/$backend" >/dev/null
            done
            echo "$line"
        done
    done
    drop_pg fbproj_rn
    ;;
rebuild)
    flights=${2:-100000}
    "$bin" seed --dir "$work/sqlite" --flights "$flights" --quiet >/dev/null 2>&1
    drop_pg fbproj_rb
    "$bin" seed --dir "$work/pg" --flights "$flights" --quiet --backend postgres --pg-url "$PG/fbproj_rb" >/dev/null
    echo "# $flights flights, 8 shards: flightbench projections rebuild MODEL (default batch)"
    for round in $(seq "$ROUNDS"); do
        for backend in sqlite pg; do
            for model in departures_board airport_hours carrier_on_time; do
                echo "round $round $backend $model: $("$bin" projections rebuild "$model" --dir "$work/$backend" --quiet | tail -n 1)"
            done
        done
    done
    drop_pg fbproj_rb
    ;;
lag)
    rate=${2:?writes per second}
    "$bin" seed --dir "$work/sqlite" --quiet >/dev/null
    start_server "$bin" "$work/sqlite"
    echo "# open-loop write=100 at $rate/s for ${RUN}s; in-process runner; /readyz's largest async lag sampled every 50 ms"
    "$bin" load --target "$url" --dir "$work/sqlite" --mix write=100 --rate "$rate" -c 16 --quiet -d "${RUN}s" \
        --json "$work/load.json" >/dev/null &
    loader=$!
    : >"$work/lags"
    while kill -0 "$loader" 2>/dev/null; do
        curl -s "$url/readyz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["probes"]["async_projections"]["max_lag_events"])' >>"$work/lags" || true
        sleep 0.05
    done
    python3 - "$work/lags" "$work/load.json" <<'PY'
import json, sys
lags = sorted(int(l) for l in open(sys.argv[1]) if l.strip() not in ("", "None"))
r = json.load(open(sys.argv[2]))
pick = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))]
rate = r["achieved_rate"]
acked = r["status_counts"].get("201", 0) / r["elapsed_s"]
print(f"{len(lags)} samples; lag events p50 {pick(0.5)} p99 {pick(0.99)} max {lags[-1]}; "
      f"{rate:.0f} req/s, {acked:.0f} acknowledged writes/s; write p99 {r['latency']['p99_ms']:.2f} ms")
PY
    stop_server
    ;;
board)
    "$bin" seed --dir "$work/s16" --shards 16 --quiet >/dev/null
    start_server "$bin" "$work/s16"
    window="from=2026-12-10T00:00:00Z&to=2026-12-11T00:00:00Z&limit=50"
    airport=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["airports"][0])' "$work/s16/manifest.json")
    echo "# 16 SQLite shards, GET /airports/$airport/{departures,board}?$window; 16 connections, ${RUN}s; req/s p99_ms"
    for round in $(seq "$ROUNDS"); do
        line="round $round:"
        for route in departures board; do
            "$bin" load --url "$url/airports/$airport/$route?$window" -c 16 --quiet --warmup 1s -d "${RUN}s" \
                --json "$work/load.json" >/dev/null
            line="$line $route $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%.0f %.2f" % (r["achieved_rate"], r["latency"]["p99_ms"]))' "$work/load.json")"
        done
        echo "$line"
    done
    stop_server
    ;;
*)
    echo "usage: $0 sequence BEFORE_BIN | runner | rebuild [FLIGHTS] | lag RATE | board" >&2
    exit 64
    ;;
esac
