#!/usr/bin/env bash
# Load-tests `flightbench serve` with wrk (HTTP/1.1) and h2load (HTTP/2, h2c) against
# the 1,000,000-flight, 8-shard SQLite dataset, for each query path, identity and br:
# GET /flights/{id} with the cache off (uniform ids) and on (Zipf ids), and the
# departures endpoint (random hub/window); plus the fixed-body ceiling
# (`flightbench ceiling`) in the same session; per runtime shape. Writes
# results/server.md. Traffic goes to 127.0.0.1 only; every run is bounded in time.
#
# BEFORE=path instead compares an older build with this one on the raw path's point
# reads (per-core runtime; cache off with uniform ids, cache on with Zipf ids), in
# ROUNDS interleaved rounds (default 5; the order alternates), and prints each round's
# after/before ratio and their median, for wrk and h2load. Two single runs in one
# session differ by 10-15% on this machine; the ratio per round does not carry that.
#
#   scripts/measure-server.sh
#   SECONDS_PER_RUN=5 PATHS="raw prepared" scripts/measure-server.sh
#   BEFORE=/path/to/older/flightbench SECONDS_PER_RUN=5 OUT=/tmp/ab.md scripts/measure-server.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${SECONDS_PER_RUN:-10}
PATHS=${PATHS:-"prepared adhoc orm raw"}
RUNTIMES=${RUNTIMES:-"multi-thread per-core"}
FLIGHTS=${FLIGHTS:-1000000}
OUT=${OUT:-results/server.md}
for tool in wrk h2load; do command -v $tool >/dev/null || { echo "error: $tool missing (apt-get install -y wrk nghttp2-client)" >&2; exit 1; }; done
# shellcheck source=scripts/measure-lib.sh
source scripts/measure-lib.sh
measure_setup

"$bin" seed --quiet --dir "$work/shards" --flights "$FLIGHTS" --shards 8
# Request lists, the same for every arm: 200,000 uniformly random flight ids (the
# uncached figures); 200,000 Zipf-distributed ids (s = 1 over a random popularity
# order: the hot set a cache is for); 2,000 departures windows of 2 hours at the 16
# busiest airports (limit 50).
python3 - "$work" "$FLIGHTS" <<'PY'
import bisect, datetime, itertools, random, sys
work, n = sys.argv[1], int(sys.argv[2])
r = random.Random(2026)
with open(f"{work}/flights.txt", "w") as f:
    for _ in range(200_000):
        f.write(f"/flights/{r.randint(1, n)}\n")
order = list(range(1, n + 1))
r.shuffle(order)
cumulative = list(itertools.accumulate(1.0 / k for k in range(1, n + 1)))
with open(f"{work}/zipf.txt", "w") as f:
    for _ in range(200_000):
        rank = bisect.bisect_left(cumulative, r.random() * cumulative[-1])
        f.write(f"/flights/{order[min(rank, n - 1)]}\n")
hubs = "ATL DXB DFW LHR HND DEN IST LAX ORD DEL CDG JFK CAN AMS SIN FRA".split()
start = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)
with open(f"{work}/departures.txt", "w") as f:
    for _ in range(2_000):
        t = start + datetime.timedelta(hours=r.randint(0, 30 * 24 - 3))
        a, b = t.strftime("%Y-%m-%dT%H:00:00Z"), (t + datetime.timedelta(hours=2)).strftime("%Y-%m-%dT%H:00:00Z")
        f.write(f"/airports/{r.choice(hubs)}/departures?from={a}&to={b}&limit=50\n")
PY
# wrk walks the same list with a Lua script, each thread from its own starting point.
cat >"$work/list.lua" <<'LUA'
local threads, paths, i = 0, {}, 0
setup = function(thread) thread:set("id", threads); threads = threads + 1 end
init = function(args)
    for line in io.lines(args[1]) do paths[#paths + 1] = line end
    i = (id or 0) * math.floor(#paths / 2)
end
request = function() i = i % #paths + 1; return wrk.format("GET", paths[i]) end
LUA

start() {
    "$@" >"$work/server.out" 2>"$work/server.err" &
    pid=$!
    for _ in $(seq 200); do
        base=$(sed -n 's/^listening on \(http[^ ,]*\).*/\1/p' "$work/server.out")
        [ -n "$base" ] && return
        sleep 0.1
    done
    cat "$work/server.err" >&2; echo "error: server did not start" >&2; exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }
hits=()

rows=()
# One wrk run: prints "req/s p50 p99 errors".
run_wrk() {
    local list=$1 enc=$2
    wrk -t2 -c64 -d"${RUN}s" --latency -H "accept-encoding: $enc" -s "$work/list.lua" "$base" -- "$list" >"$work/wrk.out" 2>&1 \
        || { cat "$work/wrk.out" >&2; echo "server stderr:" >&2; cat "$work/server.err" >&2; exit 1; }
    awk -v out="$work/wrk.out" '
        /Requests\/sec/ {rps=$2}
        /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
        /Non-2xx/ {err+=$NF}
        /Socket errors/ {for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) err += $i + 0}
        END {printf "%.0f %s %s %d\n", rps, p50, p99, err}' "$work/wrk.out"
}
# One h2load run: prints "req/s p50 p99 errors" (percentiles from its request log).
run_h2load() {
    local list=$1 enc=$2
    # h2load appends to its log file: start each run with an empty one.
    rm -f "$work/h2.log"
    # h2load takes scheme, host and port from the first URI of the list only.
    { printf '%s%s\n' "$base" "$(head -n 1 "$list")"; tail -n +2 "$list"; } >"$work/h2list.txt"
    h2load -c16 -m16 -D "$RUN" --warm-up-time=1 -H "accept-encoding: $enc" -i "$work/h2list.txt" --log-file="$work/h2.log" >"$work/h2.out" 2>&1 \
        || { cat "$work/h2.out" >&2; echo "server stderr:" >&2; cat "$work/server.err" >&2; exit 1; }
    local rps failed
    rps=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' "$work/h2.out")
    failed=$(sed -n 's/^requests: .* \([0-9]*\) failed, \([0-9]*\) errored, \([0-9]*\) timeout.*/\1 \2 \3/p' "$work/h2.out" | awk '{print $1+$2+$3}')
    # Non-2xx answers. (Requests still in flight when the duration ends are logged
    # with status 0 and counted as neither; they are left out of the percentiles.)
    local codes
    codes=$(sed -n 's/^status codes: [0-9]* 2xx, \([0-9]*\) 3xx, \([0-9]*\) 4xx, \([0-9]*\) 5xx.*/\1 \2 \3/p' "$work/h2.out" | awk '{print $1+$2+$3}')
    awk '$2 != 0' "$work/h2.log" | sort -n -k3 | awk -v rps="$rps" -v err="$((failed + codes))" '{v[NR]=$3} END {
        printf "%.0f %.2fms %.2fms %d\n", rps, v[int(NR*0.5)]/1000, v[int(NR*0.99)]/1000, err}'
}

# One server arm: label, request list, encoding; appends a table row.
arm() {
    local label=$1 list=$2 enc=$3 ceiling_wrk=$4 ceiling_h2=$5
    echo "$label $enc" >&2
    read -r w w50 w99 werr < <(run_wrk "$work/$list.txt" "$enc")
    read -r h h50 h99 herr < <(run_h2load "$work/$list.txt" "$enc")
    wr=$(awk -v a="$w" -v b="$ceiling_wrk" 'BEGIN {printf "%.2f", a / b}')
    hr=$(awk -v a="$h" -v b="$ceiling_h2" 'BEGIN {printf "%.2f", a / b}')
    rows+=("| $label | $enc | $w | $w50 / $w99 | $wr | $h | $h50 / $h99 | $hr | $((werr + herr)) |")
    # Errors are never averaged away: show what the tools said.
    if [ "$((werr + herr))" -gt 0 ]; then
        echo "errors in $label $enc (wrk $werr, h2load $herr):" >&2
        grep -E "Socket errors|Non-2xx" "$work/wrk.out" >&2 || true
        grep -E "^requests:|^status codes" "$work/h2.out" >&2 || true
        awk '$2 != 200 && $2 != 0' "$work/h2.log" | head -5 >&2
    fi
}
# The cache's hit ratio, from the line `serve` prints when it stops.
hit_ratio() { sed -n 's/^flight cache: .*(\([0-9.]*% hits\)).*/\1/p' "$work/server.err"; }

# The point-read rows of one build (raw path, per-core): "uncached-wrk uncached-h2load
# cached-wrk cached-h2load" req/s.
point_reads() {
    local b=$1 w h cw ch rest
    start "$b" serve --dir "$work/shards" --addr 127.0.0.1:0 --path raw --cache off --runtime per-core
    read -r w rest < <(run_wrk "$work/flights.txt" identity)
    read -r h rest < <(run_h2load "$work/flights.txt" identity)
    stop
    start "$b" serve --dir "$work/shards" --addr 127.0.0.1:0 --path raw --cache on --runtime per-core
    run_wrk "$work/zipf.txt" identity >/dev/null
    read -r cw rest < <(run_wrk "$work/zipf.txt" identity)
    read -r ch rest < <(run_h2load "$work/zipf.txt" identity)
    stop
    echo "$w $h $cw $ch"
}
if [ -n "${BEFORE:-}" ]; then
    ab_rows=()
    for round in $(seq "${ROUNDS:-5}"); do
        order=(before after)
        [ $((round % 2)) -eq 0 ] && order=(after before)
        for which in "${order[@]}"; do
            echo "round $round: $which" >&2
            # Not in a subshell: a failing run stops the script, and the trap stops its server.
            if [ "$which" = before ]; then
                point_reads "$BEFORE" >"$work/reads.txt"
                read -r -a old <"$work/reads.txt"
            else
                point_reads "$bin" >"$work/reads.txt"
                read -r -a new <"$work/reads.txt"
            fi
        done
        ratios=$(awk -v a="${new[*]}" -v b="${old[*]}" 'BEGIN {split(a, x); split(b, y); for (i = 1; i <= 4; i++) printf "%.3f ", x[i] / y[i]}')
        ab_rows+=("$ratios")
        echo "| $round | ${order[*]} | ${old[0]} → ${new[0]} | ${old[1]} → ${new[1]} | ${old[2]} → ${new[2]} | ${old[3]} → ${new[3]} |" >>"$work/ab.md"
    done
    {
        echo "| round | order | uncached, wrk req/s | uncached, h2load req/s | cached, wrk req/s | cached, h2load req/s |"
        echo "|---|---|---|---|---|---|"
        cat "$work/ab.md"
        printf '%s\n' "${ab_rows[@]}" | python3 -c '
import statistics, sys
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
names = ["uncached, wrk", "uncached, h2load", "cached, wrk", "cached, h2load"]
print()
print("After / before, median of the rounds (low–high): " + "; ".join(
    f"{n} {statistics.median(c):.3f}× ({min(c):.3f}–{max(c):.3f})" for n, c in zip(names, zip(*rows))) + ".")'
        echo
        echo "Command: \`BEFORE=$BEFORE SECONDS_PER_RUN=$RUN ROUNDS=${ROUNDS:-5} FLIGHTS=$FLIGHTS scripts/measure-server.sh\`; after = $commit. Raw path, per-core runtime, wrk \`-t2 -c64\` and h2load \`-c16 -m16\`; cache-on servers warmed by one unrecorded wrk pass. $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ)."
    } >"$OUT"
    echo "wrote $OUT" >&2
    exit 0
fi

printf '/\n' >"$work/root.txt"
for runtime in $RUNTIMES; do
    echo "ceiling $runtime" >&2
    start "$bin" ceiling --addr 127.0.0.1:0 --runtime "$runtime"
    read -r c_wrk c_wrk50 c_wrk99 c_wrkerr < <(run_wrk "$work/root.txt" identity)
    read -r c_h2 c_h250 c_h299 c_h2err < <(run_h2load "$work/root.txt" identity)
    stop
    rows+=("| **$runtime**: ceiling (fixed 270-byte body) | identity | $c_wrk | $c_wrk50 / $c_wrk99 | 1.00 | $c_h2 | $c_h250 / $c_h299 | 1.00 | $((c_wrkerr + c_h2err)) |")
    # The full matrix on the default runtime; on the others, the raw path's point reads.
    paths=$PATHS
    [ "$runtime" = multi-thread ] || paths=raw
    for path in $paths; do
        start "$bin" serve --dir "$work/shards" --addr 127.0.0.1:0 --path "$path" --cache off --runtime "$runtime"
        for enc in identity br; do arm "$path, cache off: flights (uniform ids)" flights "$enc" "$c_wrk" "$c_h2"; done
        if [ "$runtime" = multi-thread ]; then
            for enc in identity br; do arm "$path: departures" departures "$enc" "$c_wrk" "$c_h2"; done
        fi
        stop
        start "$bin" serve --dir "$work/shards" --addr 127.0.0.1:0 --path "$path" --cache on --runtime "$runtime"
        # Warm the cache with one unrecorded pass, so every cache-on row is steady state.
        run_wrk "$work/zipf.txt" identity >/dev/null
        encs="identity br"
        [ "$runtime" = multi-thread ] || encs=identity
        for enc in $encs; do arm "$path, cache on: flights (Zipf ids)" zipf "$enc" "$c_wrk" "$c_h2"; done
        stop
        hits+=("$runtime/$path: $(hit_ratio)")
    done
done

{
    echo "# Server load: \`flightbench serve\` against its fixed-body ceiling"
    echo
    echo "wrk: HTTP/1.1, \`-t2 -c64\`; h2load: h2c, \`-c16 -m16\` (1 s warm-up); ${RUN} s each, one after another in one session. Ratios are to the ceiling measured by the same tool, on the same runtime shape, in the same session. Point-read bodies (~270 B) are below the 1 KiB compression threshold, so \`br\` changes nothing for them; it is listed because a client asking for it is the common case."
    echo
    echo "| server | encoding | wrk req/s | wrk p50 / p99 | × ceiling | h2load req/s | h2load p50 / p99 | × ceiling | errors |"
    echo "|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "Each cache-on server gets one unrecorded ${RUN} s wrk pass over the Zipf list first, so its rows are steady state. Cache hit ratios over each cache-on server's whole life (warm-up pass included): $(IFS=';'; echo "${hits[*]}" | sed 's/;/; /g')."
    echo
    echo "## How it ran"
    echo
    echo "- Command: \`SECONDS_PER_RUN=$RUN PATHS=\"$PATHS\" RUNTIMES=\"$RUNTIMES\" scripts/measure-server.sh\`"
    echo "- Dataset: $FLIGHTS flights, 8 SQLite shards (WAL, synchronous=NORMAL, mmap), seed 42. Request lists: 200,000 uniformly random flight ids (cache off); 200,000 Zipf (s = 1) flight ids over a random popularity order (cache on, capacity 100,000 flights); 2,000 random 2-hour windows at the 16 busiest airports, limit 50. br at the server's default level."
    echo "- Runtime shapes: **multi-thread** is one tokio multi-thread runtime with $(nproc) workers; **per-core** is $(nproc) current-thread runtimes, one per thread, each accepting on its own SO_REUSEPORT listener (\`--runtime per-core\`, not pinned). The load generator runs on the same $(nproc) cores (no pinning), so server and client compete for CPU, and the ceiling is measured under the same handicap."
    echo "- Commit: $commit; $(rustc -V); release build"
    echo "- Tools: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $(h2load --version 2>&1 | head -1)"
    echo "- CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; date $(date -u +%Y-%m-%dT%H:%MZ)"
} >"$OUT"
echo "wrote $OUT" >&2
