#!/usr/bin/env bash
# User-space instructions per request of each load generator, counted by callgrind:
# `flightbench load` against wrk (HTTP/1.1, 64 connections) and h2load (h2c, 16
# connections × 16 streams), each with one thread, against the fixed-body server
# (`flightbench ceiling --threads 1`, not under valgrind). Instruction counts do not
# depend on what else the machine is doing, so this compares the generators' own
# cost where timings on 2 shared cores cannot (the kernel's share is not counted).
#
# Each generator runs twice, a short and a long run, and the figure is the difference
# in instructions over the difference in requests, so start-up and shut-down cancel.
# Writes results/load-instructions.md. Traffic goes to 127.0.0.1 only, bounded.
#
#   scripts/measure-load-instructions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/load-instructions.md}
for tool in wrk h2load valgrind python3; do command -v $tool >/dev/null || { echo "error: $tool missing (apt-get install -y wrk nghttp2-client valgrind)" >&2; exit 1; }; done
# shellcheck source=scripts/measure-lib.sh
source scripts/measure-lib.sh
measure_setup

taskset -c 0 "$bin" ceiling --addr 127.0.0.1:0 --threads 1 >"$work/server.out" 2>"$work/server.err" &
pid=$!
url="$(wait_for_url "$work/server.out" "$work/server.err" 100)/"

# Runs "$@" under callgrind on core 1; prints its instruction total.
instructions() {
    taskset -c 1 valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$@" >"$work/out" 2>"$work/cg.err"
    sed -n 's/^summary: //p' "$work/cg.out"
}
fb_requests() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["responses"])' "$work/fb.json"; }
fb() { # REQUESTS ARGS...
    local n=$1
    shift
    local ir
    ir=$(instructions "$bin" load --url "$url" --threads 1 --quiet --warmup 0s -n "$n" -d 120s --json "$work/fb.json" "$@")
    echo "$ir $(fb_requests)"
}
wrk_run() { # SECONDS
    local ir
    ir=$(instructions wrk -t1 -c64 -d"$1"s "$url")
    echo "$ir $(awk '/requests in/ {print $1}' "$work/out")"
}
h2load_run() { # REQUESTS
    local ir
    ir=$(instructions h2load -c16 -m16 -n "$1" "$url")
    echo "$ir $(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' "$work/out")"
}
# Instructions per request from two runs: "ir1 n1" "ir2 n2".
per_request() {
    read -r ir1 n1 <<<"$1"
    read -r ir2 n2 <<<"$2"
    awk -v a="$ir1" -v b="$ir2" -v m="$n1" -v n="$n2" 'BEGIN {printf "%.0f", (b - a) / (n - m)}'
}

echo "wrk" >&2
wrk_per=$(per_request "$(wrk_run 2)" "$(wrk_run 6)")
echo "flightbench h1" >&2
fb1_per=$(per_request "$(fb 20000 -c 64)" "$(fb 60000 -c 64)")
echo "h2load" >&2
h2load_per=$(per_request "$(h2load_run 20000)" "$(h2load_run 60000)")
echo "flightbench h2" >&2
fb2_per=$(per_request "$(fb 20000 --protocol h2 -c 16 -m 16)" "$(fb 60000 --protocol h2 -c 16 -m 16)")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

{
    echo "# Load generators: user-space instructions per request"
    echo
    echo "Counted by callgrind (user space only; the kernel's work for the same send and receive is not in it). Each figure is the difference between a short and a long run over the difference in requests, so start-up cancels out."
    echo
    echo "| protocol | other tool | its instructions / request | flightbench instructions / request | flightbench / other |"
    echo "|---|---|---|---|---|"
    echo "| HTTP/1.1, 64 connections | wrk \`-t1 -c64\` | $wrk_per | $fb1_per | $(ratio "$fb1_per" "$wrk_per")× |"
    echo "| h2c, 16 connections × 16 streams | h2load \`-c16 -m16\` | $h2load_per | $fb2_per | $(ratio "$fb2_per" "$h2load_per")× |"
    echo
    echo "## How it ran"
    echo
    echo "- Command: \`scripts/measure-load-instructions.sh\`"
    echo "- Server: \`flightbench ceiling --threads 1\` under \`taskset -c 0\`, not under valgrind. Each generator under \`taskset -c 1\` with one thread: wrk for 2 s and 6 s; h2load \`-n 20000\` and \`-n 60000\`; flightbench \`load --threads 1 -n 20000\` and \`-n 60000\` (\`-c 64\`, or \`--protocol h2 -c 16 -m 16\`)."
    echo "- Commit: $commit; $(rustc --version); release build; $(valgrind --version)"
    echo "- Tools: wrk $(dpkg-query -W -f '${Version}' wrk 2>/dev/null || echo '?'), h2load $(h2load --version 2>&1 | head -1)"
    echo "- CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; date $(date -u +%Y-%m-%dT%H:%MZ)"
} >"$OUT"
echo "wrote $OUT" >&2
