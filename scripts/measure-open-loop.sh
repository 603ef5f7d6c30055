#!/usr/bin/env bash
# How well `flightbench load --rate` keeps its schedule, and what that costs: against
# `flightbench ceiling` (per-core runtime) and a bare hyper server (`ceiling --runtime
# multi-thread`: hyper-util's auto builder on tokio's multi-thread runtime), over
# HTTP/1.1 and h2c, at 20,000 and 50,000 req/s with the generator's default threads;
# and the coordinated-omission check: a server frozen (SIGSTOP) for 1 s every 5 s,
# loaded at 500 req/s, must show its stalls in the corrected p99.
#
# For each run: the send lag (how late requests left against the schedule) p50/p99,
# the corrected and uncorrected latency p50 (from the intended and from the actual
# send time), the achieved rate against the asked one, and the generator's CPU per
# 1,000 requests. This build runs twice: exactly on schedule (the default) and with
# `--pacing-tick 1ms` (tokio's old grid: cheaper, up to 1 ms late). BEFORE=path
# measures an older binary the same way beside it.
# Writes results/load-open-loop.md. Traffic goes to 127.0.0.1 only, bounded in time.
#
#   scripts/measure-open-loop.sh
#   BEFORE=/path/to/older/flightbench SECONDS_PER_RUN=8 scripts/measure-open-loop.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${SECONDS_PER_RUN:-8}
OUT=${OUT:-results/load-open-loop.md}
# shellcheck source=scripts/measure-lib.sh
source scripts/measure-lib.sh
measure_setup

start_server() { # runtime [prefix words, e.g. taskset -c 0] [server flags]
    # shellcheck disable=SC2086 # words
    ${2:-} "$bin" ceiling --addr 127.0.0.1:0 --runtime "$1" ${3:-} >"$work/server.out" 2>"$work/server.err" &
    pid=$!
    url="$(wait_for_url "$work/server.out" "$work/server.err" 100)/"
}
stop_server() {
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
}
# One open-loop run; prints "lag_p50 lag_p99 corrected_p50 uncorrected_p50 corrected_p99 achieved/asked cpu_ms".
open_loop() { # binary rate protocol seconds [extra flags] [prefix words]
    local conn=(-c 64)
    [ "$3" = h2 ] && conn=(-c 16 -m 16)
    # shellcheck disable=SC2086 # the extra flags and the prefix are words
    ${6:-} "$1" load --url "$url" --protocol "$3" "${conn[@]}" --rate "$2" -d "${4}s" --warmup 1s --quiet ${5:-} \
        --json "$work/open.json" >/dev/null
    python3 - "$work/open.json" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
lag, lat, unc = r["scheduler_lag"], r["latency"], r["uncorrected_latency"]
print(f'{lag["p50_ms"]:.3f} {lag["p99_ms"]:.3f} {lat["p50_ms"]:.3f} {unc["p50_ms"]:.3f} {lat["p99_ms"]:.3f} '
      f'{r["achieved_rate"] / float(sys.argv[2]):.4f} {r["cpu_ms_per_1000"]:.1f}')
PY
}

binaries=("$bin" "$bin")
labels=("this build ($commit)" "this build, --pacing-tick 1ms")
flags=("" "--pacing-tick 1ms")
if [ -n "${BEFORE:-}" ]; then
    binaries=("$BEFORE" "$bin" "$bin")
    labels=("before" "after ($commit)" "after, --pacing-tick 1ms")
    flags=("" "" "--pacing-tick 1ms")
fi
rows=()
for runtime in per-core multi-thread; do
    name=$([ "$runtime" = per-core ] && echo "flightbench ceiling" || echo "bare hyper (ceiling --runtime multi-thread)")
    start_server "$runtime"
    for protocol in h1 h2; do
        for rate in 20000 50000; do
            for b in "${!binaries[@]}"; do
                echo "$name, $protocol, $rate req/s: ${labels[$b]}" >&2
                read -r lag50 lag99 c50 u50 c99 kept cpu < <(open_loop "${binaries[$b]}" "$rate" "$protocol" "$RUN" "${flags[$b]}")
                rows+=("| $name | $protocol | $rate | ${labels[$b]} | $lag50 | $lag99 | $c50 | $u50 | $c99 | $kept | $cpu |")
            done
        done
    done
    stop_server
done

# Each on its own core: the server (one thread) on core 0, the generator (one thread)
# on core 1, so neither waits for the other's CPU.
pinned_rows=()
if [ "$(nproc)" -ge 2 ]; then
    start_server per-core "taskset -c 0" "--threads 1"
    for protocol in h1 h2; do
        for b in "${!binaries[@]}"; do
            echo "pinned, $protocol, 20000 req/s: ${labels[$b]}" >&2
            read -r lag50 lag99 c50 u50 c99 kept cpu < <(open_loop "${binaries[$b]}" 20000 "$protocol" "$RUN" \
                "--threads 1 ${flags[$b]}" "taskset -c 1")
            pinned_rows+=("| $protocol | 20000 | ${labels[$b]} | $lag50 | $lag99 | $c50 | $u50 | $c99 | $kept | $cpu |")
        done
    done
    stop_server
fi

# Coordinated omission: the server frozen for 1 s every 5 s.
start_server per-core
server=$pid
(
    while kill -0 "$server" 2>/dev/null; do
        sleep 4
        kill -STOP "$server" 2>/dev/null || exit 0
        sleep 1
        kill -CONT "$server" 2>/dev/null || exit 0
    done
) &
staller=$!
stall_rows=()
for b in "${!binaries[@]}"; do
    for protocol in h1 h2; do
        echo "stalled server, $protocol, 500 req/s: ${labels[$b]}" >&2
        read -r lag50 lag99 c50 u50 c99 kept cpu < <(open_loop "${binaries[$b]}" 500 "$protocol" 20 "${flags[$b]}")
        stall_rows+=("| $protocol | ${labels[$b]} | $c99 | $u50 | $kept |")
    done
done
kill "$staller" 2>/dev/null || true
kill -CONT "$server" 2>/dev/null || true
stop_server

{
    echo "# The open loop's schedule"
    echo
    echo "\`flightbench load --rate R\` against a fixed-body server, ${RUN} s measured after a 1 s warm-up. **Send lag** is how late each request left against its schedule; **corrected** latency counts from the scheduled send time, **uncorrected** from the actual one (what a closed-loop tool reports). Against a server with no stalls the two should agree; what separates them is the generator's own lateness."
    echo
    echo "| server | protocol | req/s asked | build | send lag p50 ms | send lag p99 ms | corrected p50 ms | uncorrected p50 ms | corrected p99 ms | achieved / asked | generator CPU ms / 1,000 req |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    echo
    if [ ${#pinned_rows[@]} -gt 0 ]; then
        echo "## Server and generator on a core each"
        echo
        echo "\`taskset -c 0 flightbench ceiling --threads 1\` and \`taskset -c 1 flightbench load --threads 1 …\`: the same runs with nothing sharing a core, to show how much of the lateness above is the two waiting for each other's CPU."
        echo
        echo "| protocol | req/s asked | build | send lag p50 ms | send lag p99 ms | corrected p50 ms | uncorrected p50 ms | corrected p99 ms | achieved / asked | generator CPU ms / 1,000 req |"
        echo "|---|---|---|---|---|---|---|---|---|---|"
        printf '%s\n' "${pinned_rows[@]}"
        echo
    fi
    echo "## Coordinated omission: a server frozen 1 s in every 5"
    echo
    echo "\`flightbench ceiling\` stopped with SIGSTOP for 1 s every 5 s, loaded at 500 req/s for 20 s. Every request scheduled during a freeze waits for it, so the corrected p99 must be at least 500 ms; the uncorrected p50 is what a closed-loop tool would report."
    echo
    echo "| protocol | build | corrected p99 ms | uncorrected p50 ms | achieved / asked |"
    echo "|---|---|---|---|---|"
    printf '%s\n' "${stall_rows[@]}"
    echo
    echo "## How it ran"
    echo
    echo "- Command: \`${BEFORE:+BEFORE=$BEFORE }SECONDS_PER_RUN=$RUN scripts/measure-open-loop.sh\`"
    echo "- Server: \`flightbench ceiling\` (270-byte JSON body) with $(nproc) threads, per-core or multi-thread; generator: \`flightbench load --url … --rate R\`, default threads ($(nproc)), \`-c 64\` on HTTP/1.1 or \`-c 16 -m 16\` on h2c. Server and generator share the machine's $(nproc) cores, unpinned."
    echo "- Commit: $commit; $(rustc -V); release build"
    echo "- CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ)"
} >"$OUT"
echo "wrote $OUT" >&2
