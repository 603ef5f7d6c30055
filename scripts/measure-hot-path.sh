#!/usr/bin/env bash
# What one request costs the server in user-space instructions and heap allocations,
# counted by valgrind (callgrind and DHAT), which this shared machine's load does not
# move: GET /flights/{id} answered from the flight cache, the same read through the
# store (raw path, cache off), and a 50-row departures board. The server runs with one
# thread under valgrind for FEW and then MANY requests of one fixed URL; the
# difference over MANY - FEW requests is one request's cost, start-up cancelled out.
#
#   scripts/measure-hot-path.sh                            # this tree
#   BEFORE=/path/to/older/flightbench scripts/measure-hot-path.sh   # and an older build beside it
set -euo pipefail
cd "$(dirname "$0")/.."
FLIGHTS=${FLIGHTS:-100000}
FEW=${FEW:-500}
MANY=${MANY:-2500}
OUT=${OUT:-/dev/stdout}
command -v valgrind >/dev/null || { echo "error: valgrind missing (apt-get install -y valgrind)" >&2; exit 1; }
# shellcheck source=scripts/measure-lib.sh
source scripts/measure-lib.sh
measure_setup
"$bin" seed --quiet --dir "$work/shards" --flights "$FLIGHTS" --shards 8

cases=("cache hit" "through the store" "departures board")
serve_flags_of() { case $1 in 0) echo "--cache on" ;; *) echo "--cache off" ;; esac; }
path_of() {
    case $1 in
    0 | 1) echo "/flights/17" ;;
    2) echo "/airports/ATL/departures?from=2026-12-03T06:00:00Z&to=2026-12-03T12:00:00Z&limit=50" ;;
    esac
}

# One figure for one binary, case and tool: the server under valgrind for N requests.
measure() { # binary case tool requests
    local out="$work/vg.out"
    local tool_flags=(--tool=callgrind --callgrind-out-file="$out" --dump-instr=no)
    [ "$3" = dhat ] && tool_flags=(--tool=dhat --dhat-out-file="$out")
    # Emptied here, before the server starts: the wait below must not read the
    # previous server's address before the new server's shell truncates the file.
    : >"$work/server.out"
    # shellcheck disable=SC2046
    valgrind "${tool_flags[@]}" "$1" serve --dir "$work/shards" --addr 127.0.0.1:0 --no-admin --runtime per-core \
        --threads 1 --metrics on $(serve_flags_of "$2") >"$work/server.out" 2>"$work/valgrind.err" &
    pid=$!
    url=$(wait_for_url "$work/server.out" "$work/valgrind.err" 600)
    "$bin" load --url "$url$(path_of "$2")" -c 4 --threads 1 --quiet --warmup 0s -n "$4" -d 600s >/dev/null
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
    if [ "$3" = dhat ]; then
        sed -n 's/.*Total: *[0-9,]* bytes in \([0-9,]*\) blocks.*/\1/p' "$work/valgrind.err" | tr -d ,
    else
        awk '/^(summary|totals):/ {print $2; exit}' "$out"
    fi
}
per_request() { # binary case tool
    local few many
    few=$(measure "$1" "$2" "$3" "$FEW")
    many=$(measure "$1" "$2" "$3" "$MANY")
    awk -v a="$few" -v b="$many" -v n="$((MANY - FEW))" 'BEGIN {printf "%.1f", (b - a) / n}'
}

binaries=("$bin")
labels=("this build ($commit)")
if [ -n "${BEFORE:-}" ]; then
    binaries=("$BEFORE" "$bin")
    labels=("before ($BEFORE)" "after ($commit)")
fi
declare -A instr allocs
for b in "${!binaries[@]}"; do
    for c in 0 1 2; do
        echo "${labels[$b]}: ${cases[$c]}" >&2
        instr[$b,$c]=$(per_request "${binaries[$b]}" "$c" callgrind)
        allocs[$b,$c]=$(per_request "${binaries[$b]}" "$c" dhat)
    done
done
{
    echo "| request | build | instructions / request | heap allocations / request |"
    echo "|---|---|---|---|"
    for c in 0 1 2; do
        for b in "${!binaries[@]}"; do
            echo "| ${cases[$c]} | ${labels[$b]} | ${instr[$b,$c]} | ${allocs[$b,$c]} |"
        done
    done
    if [ ${#binaries[@]} -eq 2 ]; then
        echo
        for c in 0 1 2; do
            awk -v a="${instr[0,$c]}" -v b="${instr[1,$c]}" -v x="${allocs[0,$c]}" -v y="${allocs[1,$c]}" -v n="${cases[$c]}" \
                'BEGIN {printf "- %s: %.3f× the instructions, %.1f fewer allocations per request\n", n, b / a, x - y}'
        done
    fi
    echo
    echo "Command: \`${BEFORE:+BEFORE=$BEFORE }FLIGHTS=$FLIGHTS FEW=$FEW MANY=$MANY scripts/measure-hot-path.sh\`; $FLIGHTS flights in 8 SQLite shards; \`serve --threads 1 --metrics on\` under valgrind 3 ($(valgrind --version)), \`load --url … -c 4 --threads 1\` (HTTP/1.1, identity). $(rustc -V); $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ)."
} >"$OUT"
