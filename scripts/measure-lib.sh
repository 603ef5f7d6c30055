# Shared by the scripts that measure (measure-load.sh, measure-load-instructions.sh,
# measure-profile-overhead.sh, measure-server.sh, measure-observability.sh). The
# functions below use bin (the flightbench binary), work (a scratch directory), url
# (the server), pid (its process) and RUN (measured seconds); `measure_setup` sets
# bin, work and pid.

# Takes the tree's provenance (before building: the binary is what the tree holds
# now), builds the release binary, and sets commit, bin, work and pid; the scratch
# directory and the server are cleaned up on exit. BIN=path measures that binary
# instead of building (its own `--version`-independent commit goes in BIN_COMMIT).
measure_setup() {
    if [ -n "${BIN:-}" ]; then
        bin=$BIN
        commit=${BIN_COMMIT:-"$BIN"}
    else
        commit="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ' (with uncommitted changes)')"
        cargo build --release --quiet
        bin=target/release/flightbench
    fi
    work=$(mktemp -d)
    pid=
    trap measure_cleanup EXIT
}
measure_cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }

# The server's CPU time so far (user + system, clock ticks), from /proc.
server_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }

# One load run on GET /flights/{id} (64 connections, 1 s warm-up, RUN s measured).
# Prints "req/s p99_ms errors server_cpu_ms_per_1000_requests". The server's CPU is
# taken over the whole run (warm-up included) and divided by all responses.
run_load() {
    local before after
    before=$(server_ticks)
    "$bin" load --target "$url" --dir "$work/shards" --mix read=100 -c 64 --quiet --warmup 1s -d "${RUN}s" \
        --json "$work/load.json" "$@" >/dev/null
    after=$(server_ticks)
    python3 - "$work/load.json" "$((after - before))" "$(getconf CLK_TCK)" "$RUN" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ticks, hz, seconds = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
errors = sum(r["errors"].values()) + r["unexpected_statuses"]
# Responses over the warm-up too: the run's rate over its whole length (1 s more).
responses = r["achieved_rate"] * (seconds + 1)
print(f'{r["achieved_rate"]:.0f} {r["latency"]["p99_ms"]:.2f} {errors} {ticks / hz * 1000 / (responses / 1000):.1f}')
PY
}

# The median of its arguments.
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

# The address a server prints on its first line ("listening on http://…"), waiting
# up to TRIES tenths of a second; on failure, prints ERRFILE and exits.
wait_for_url() { # OUTFILE ERRFILE TRIES
    local found=
    for _ in $(seq "$3"); do
        found=$(sed -n 's/^listening on \(http[^ ,]*\).*/\1/p' "$1")
        [ -n "$found" ] && break
        sleep 0.1
    done
    [ -n "$found" ] || { cat "$2" >&2; exit 1; }
    echo "$found"
}

# Drops the PostgreSQL shard databases NAME_0 … NAME_{COUNT-1} of the local server
# (COUNT defaults to 16, the most any script seeds), if they exist.
drop_pg() { # NAME [COUNT]
    local i
    for i in $(seq 0 $((${2:-16} - 1))); do
        PGOPTIONS="-c client_min_messages=warning" psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS \"$1_$i\" WITH (FORCE)" >/dev/null
    done
}
