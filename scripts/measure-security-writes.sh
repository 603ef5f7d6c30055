#!/usr/bin/env bash
# The `serve`-level figures of results/security.md's writes section: signed delay
# reports (HS256, one reporter) against a `flightbench serve` process, stored in clear,
# sealed, or sealed and audited in a chain per flight, per shard or global, on SQLite
# and on PostgreSQL (which `flightbench run` does not measure); and what the
# `delay_events_data_key` index costs sealed writes.
#
#   scripts/measure-security-writes.sh scopes    # both backends, every arm
#   scripts/measure-security-writes.sh index     # SQLite: sealed, with and without the index
#
# Each prints one line per round: "arm req/s p99_ms committed/s server_cpu_us_per_request".
# Most answers are refusals (409: the load's writers race for the same flights' next
# version), so committed/s is the figure to compare;
# rounds interleave the arms so drift on this shared machine falls on all of them.
# 64 connections, closed loop, write=100. PostgreSQL: the local server, databases
# fbsec_* (dropped at the end). Nothing is pinned; the server runs its default shape.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/measure-lib.sh
RUN=${RUN:-5}
ROUNDS=${ROUNDS:-3}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
measure_setup

python3 -c 'import secrets; print(secrets.token_hex(32))' >"$work/secret"
"$bin" keys kek-new --kek-file "$work/kek" >/dev/null
"$bin" token --secret-file "$work/secret" --role reporter --sub bench --ttl 2h >"$work/token"
auth=(--auth jwks --jwt-secret-file "$work/secret" --oidc-issuer flightbench-dev --audience flightbench)

# Each server writes files of its own: with one shared file, wait_for_url could read
# the previous (stopped) server's address before the new one's shell truncated it.
servers=0
start_server() { # DIR [flags…]
    local dir=$1
    shift
    servers=$((servers + 1))
    "$bin" serve --addr 127.0.0.1:0 --dir "$dir" --no-admin --cache off --projector off "${auth[@]}" "$@" \
        >"$work/serve.$servers.out" 2>"$work/serve.$servers.err" &
    pid=$!
    url=$(wait_for_url "$work/serve.$servers.out" "$work/serve.$servers.err" 100)
}
stop_server() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

# "req/s p99_ms committed/s server_cpu_us_per_request" of one write-only run.
write_load() { # DIR
    local before after
    before=$(server_ticks)
    "$bin" load --target "$url" --dir "$1" --mix write=100 -c 64 --quiet --warmup 1s -d "${RUN}s" \
        --token-file "$work/token" --json "$work/load.json" >/dev/null
    after=$(server_ticks)
    python3 - "$work/load.json" "$((after - before))" "$(getconf CLK_TCK)" "$RUN" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ticks, hz, seconds = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
answered = sum(r["status_counts"].values()) or 1
committed = r["achieved_rate"] * r["status_counts"].get("201", 0) / answered
responses = r["achieved_rate"] * (seconds + 1)
print(f'{r["achieved_rate"]:.0f} {r["latency"]["p99_ms"]:.2f} {committed:.0f} {ticks / hz * 1e6 / responses:.1f}')
PY
}

arm_flags() { # ARM KEYSTORE
    case "$1" in
    clear) ;;
    sealed) echo --kek-file "$work/kek" --key-store "$2" --no-audit ;;
    audit-*) echo --kek-file "$work/kek" --key-store "$2" --audit-chain "${1#audit-}" ;;
    esac
}

case "${1:-}" in
scopes)
    arms=(clear sealed audit-flight audit-shard audit-global)
    for backend in sqlite postgres; do
        dir="$work/$backend"
        if [ "$backend" = sqlite ]; then
            "$bin" seed --dir "$dir" --quiet >/dev/null
        else
            drop_pg fbsec 8
            "$bin" seed --dir "$dir" --quiet --backend postgres --pg-url "$PG/fbsec" >/dev/null
        fi
        echo "# $backend: $(python3 -c "import json;m=json.load(open('$dir/manifest.json'));print(m['counts']['flights'],'flights,',m['shards'],'shards')"), ${RUN}s per run"
        for round in $(seq "$ROUNDS"); do
            for arm in "${arms[@]}"; do
                # shellcheck disable=SC2046
                start_server "$dir" $(arm_flags "$arm" "$work/$backend-keys.sqlite")
                result=$(write_load "$dir")
                echo "round $round $backend $arm $result"
                stop_server
            done
        done
    done
    drop_pg fbsec 8
    ;;
index)
    dir="$work/sqlite"
    "$bin" seed --dir "$dir" --quiet >/dev/null
    index() { # create|drop
        for f in "$dir"/shard-*.sqlite3; do
            if [ "$1" = drop ]; then
                sqlite3 "$f" "DROP INDEX IF EXISTS delay_events_data_key"
            else
                sqlite3 "$f" "CREATE INDEX IF NOT EXISTS delay_events_data_key ON delay_events (data_key) WHERE data_key IS NOT NULL"
            fi
        done
    }
    echo "# sqlite: sealed writes with and without delay_events_data_key, ${RUN}s per run"
    for round in $(seq "$ROUNDS"); do
        for arm in with-index without-index; do
            index "$([ "$arm" = with-index ] && echo create || echo drop)"
            # shellcheck disable=SC2046
            start_server "$dir" $(arm_flags sealed "$work/keys.sqlite")
            result=$(write_load "$dir")
            echo "round $round $arm $result"
            stop_server
        done
    done
    ;;
*)
    echo "usage: $0 scopes|index" >&2
    exit 64
    ;;
esac
