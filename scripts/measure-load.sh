#!/usr/bin/env bash
# `flightbench load` (closed loop) against wrk (HTTP/1.1, -c64) and h2load (h2c,
# -c16 -m16) on the same fixed-body server (`flightbench ceiling`), in one session:
# 1 s warm-up each way, then 10 s measured; three rounds, alternating which tool goes
# first. Also the CPU time each generator used per 1,000 requests (GNU time for wrk
# and h2load, getrusage for flightbench, both whole-process). Writes results/load.md.
# Traffic goes to 127.0.0.1 only; every run is bounded in time.
#
# PINNED=1 gives the server core 0 (one thread) and every generator core 1 (one
# thread each), so no generator takes CPU from the server: if a generator is not the
# bottleneck, it reaches what the server's core allows. Writes results/load-pinned.md.
#
#   scripts/measure-load.sh
#   SECONDS_PER_RUN=5 ROUNDS=1 scripts/measure-load.sh
#   PINNED=1 scripts/measure-load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${SECONDS_PER_RUN:-10}
ROUNDS=${ROUNDS:-3}
PINNED=${PINNED:-0}
if [ "$PINNED" = 1 ]; then
    OUT=${OUT:-results/load-pinned.md}
    serve_on=(taskset -c 0)
    load_on=(taskset -c 1)
    server_flags=(--threads 1)
    wrk_threads=1
    fb_threads=(--threads 1)
else
    OUT=${OUT:-results/load.md}
    serve_on=()
    load_on=()
    server_flags=()
    wrk_threads=2
    fb_threads=()
fi
for tool in wrk h2load python3; do command -v $tool >/dev/null || { echo "error: $tool missing (apt-get install -y wrk nghttp2-client)" >&2; exit 1; }; done
[ -x /usr/bin/time ] || { echo "error: /usr/bin/time missing (apt-get install -y time)" >&2; exit 1; }
# shellcheck source=scripts/measure-lib.sh
source scripts/measure-lib.sh
measure_setup

"${serve_on[@]}" "$bin" ceiling --addr 127.0.0.1:0 "${server_flags[@]}" >"$work/server.out" 2>"$work/server.err" &
pid=$!
url="$(wait_for_url "$work/server.out" "$work/server.err" 100)/"
shape=$(sed -n 's/.*body, //p' "$work/server.out")

# Each prints "req/s cpu_ms_per_1000 errors".
cpu_per_1000() { awk -v u="$1" -v s="$2" -v n="$3" 'BEGIN {printf "%.1f", (u + s) * 1000 / (n / 1000)}'; }
run_wrk() {
    "${load_on[@]}" wrk -t"$wrk_threads" -c64 -d1s "$url" >/dev/null
    /usr/bin/time -f "%U %S" -o "$work/time" "${load_on[@]}" wrk -t"$wrk_threads" -c64 -d"${RUN}s" "$url" >"$work/wrk.out"
    local rps total errors
    rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
    total=$(awk '/requests in/ {print $1}' "$work/wrk.out")
    errors=$(awk '/Non-2xx/ {e += $NF} /Socket errors/ {for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) e += $i + 0} END {print e + 0}' "$work/wrk.out")
    read -r user sys <"$work/time"
    echo "$rps $(cpu_per_1000 "$user" "$sys" "$total") $errors"
}
run_h2load() {
    /usr/bin/time -f "%U %S" -o "$work/time" "${load_on[@]}" h2load -c16 -m16 -D "$RUN" --warm-up-time=1 "$url" >"$work/h2.out"
    local rps done_ failed
    rps=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' "$work/h2.out")
    done_=$(sed -n 's/^requests: .* \([0-9]*\) done.*/\1/p' "$work/h2.out")
    failed=$(sed -n 's/^requests: .* \([0-9]*\) failed, \([0-9]*\) errored, \([0-9]*\) timeout.*/\1 \2 \3/p' "$work/h2.out" | awk '{print $1+$2+$3}')
    read -r user sys <"$work/time"
    # h2load's CPU includes its warm-up second; so does flightbench's (whole process).
    echo "$rps $(cpu_per_1000 "$user" "$sys" "$done_") $failed"
}
run_fb() {
    "${load_on[@]}" "$bin" load --url "$url" --quiet --warmup 1s -d "${RUN}s" --json "$work/fb.json" "$@" >/dev/null
    python3 - "$work/fb.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
errors = sum(r["errors"].values()) + r["unexpected_statuses"]
print(f'{r["achieved_rate"]:.0f} {r["cpu_ms_per_1000"]:.1f} {errors}')
PY
}

rows=()
ratios_h1=()
ratios_h2=()
for round in $(seq "$ROUNDS"); do
    echo "round $round" >&2
    if [ $((round % 2)) -eq 1 ]; then
        read -r w wc we < <(run_wrk); read -r f1 f1c f1e < <(run_fb -c 64 "${fb_threads[@]}")
        read -r h hc he < <(run_h2load); read -r f2 f2c f2e < <(run_fb --protocol h2 -c 16 -m 16 --threads 1)
    else
        read -r f1 f1c f1e < <(run_fb -c 64 "${fb_threads[@]}"); read -r w wc we < <(run_wrk)
        read -r f2 f2c f2e < <(run_fb --protocol h2 -c 16 -m 16 --threads 1); read -r h hc he < <(run_h2load)
    fi
    r1=$(awk -v a="$f1" -v b="$w" 'BEGIN {printf "%.2f", a / b}')
    r2=$(awk -v a="$f2" -v b="$h" 'BEGIN {printf "%.2f", a / b}')
    ratios_h1+=("$r1"); ratios_h2+=("$r2")
    rows+=("| $round | HTTP/1.1, 64 connections | wrk $w | $wc | flightbench $f1 | $f1c | **$r1×** | $((we + f1e)) |")
    rows+=("| $round | h2c, 16 connections × 16 streams | h2load $h | $hc | flightbench $f2 | $f2c | **$r2×** | $((he + f2e)) |")
done

{
    echo "# Load generator: \`flightbench load\` against wrk and h2load"
    echo
    echo "Closed loop against the fixed-body server (\`flightbench ceiling\`, 270-byte body), ${RUN} s measured after a 1 s warm-up, each tool in turn, $ROUNDS rounds alternating which goes first. The ratio is flightbench's requests/s over the other tool's in the same round: above 1.0× means the generator is not what limits the figure."
    echo
    echo "| round | protocol | other tool req/s | its CPU ms / 1,000 req | flightbench req/s | its CPU ms / 1,000 req | ratio | errors |"
    echo "|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "Median ratio: HTTP/1.1 $(median "${ratios_h1[@]}")× wrk; h2c $(median "${ratios_h2[@]}")× h2load."
    echo
    echo "## How it ran"
    echo
    echo "- Command: \`PINNED=$PINNED SECONDS_PER_RUN=$RUN ROUNDS=$ROUNDS scripts/measure-load.sh\`"
    if [ "$PINNED" = 1 ]; then
        echo "- Pinned: the server (\`flightbench ceiling --threads 1\`, $shape) on core 0 under \`taskset -c 0\`; every generator under \`taskset -c 1\` with one thread: wrk \`-t1 -c64\`, flightbench \`load -c 64 --threads 1\`, h2load \`-c16 -m16\`, flightbench \`load --protocol h2 -c 16 -m 16 --threads 1\`. No generator takes CPU from the server, so a generator that is not the bottleneck reaches what the server's core allows."
    else
        echo "- wrk \`-t2 -c64\` (plus an unrecorded 1 s run as warm-up); flightbench \`load -c 64\` (2 threads); h2load \`-c16 -m16 --warm-up-time=1\` (1 thread); flightbench \`load --protocol h2 -c 16 -m 16 --threads 1\` (1 thread, as h2load's default \`-t1\`: the same thread count on each side, as wrk \`-t2\` against flightbench's 2)"
        echo "- Server: \`flightbench ceiling\` ($shape, not pinned). Server and generator share the machine's $(nproc) cores (no pinning), so every figure here is also bounded by the server's share of CPU; the ratio is what compares the generators."
    fi
    echo "- CPU per 1,000 requests: user + system time of the whole generator process (GNU time for wrk and h2load, getrusage for flightbench) over the requests it counted; h2load and flightbench include their 1 s warm-up (about 10% on top), wrk warms up in a separate run that is not counted."
    echo "- Commit: $commit; $(rustc -V); release build"
    echo "- Tools: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $(h2load --version 2>&1 | head -1)"
    echo "- CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; date $(date -u +%Y-%m-%dT%H:%MZ)"
} >"$OUT"
echo "wrote $OUT" >&2
