#!/usr/bin/env bash
# The machine's own floor for a run's ratios: an A/A test. One fixed piece of
# CPU-bound work (SHA-256 over the same 64 MiB, the same instructions every time) is
# timed as cell "A" and again as cell "B" in interleaved rounds (AB BA …), pinned to
# one core, exactly as `flightbench run` interleaves two configurations of a part.
# The true ratio B/A is 1.00×; how far each "run"'s estimate of it strays is what the
# machine alone does to a ratio, before any server, load generator or database.
#
# For each of RUNS runs (default 9) of ROUNDS rounds (default 5, the default preset's)
# with cells of CELL_SECONDS each (default 2, the default preset's): the A/A ratio by wall
# time (as throughput is) and by the thread's CPU time (as server CPU per request is),
# and how far the runs spread around 1.00×. Appends a section to
# results/reproducibility.md (OUT=).
#
#   scripts/measure-noise-floor.sh
#   CORE=1 RUNS=5 scripts/measure-noise-floor.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-9}
ROUNDS=${ROUNDS:-5}
SECONDS_PER_CELL=${CELL_SECONDS:-2}
CORE=${CORE:-0}
OUT=${OUT:-results/reproducibility.md}
python3 - "$RUNS" "$ROUNDS" "$SECONDS_PER_CELL" "$CORE" >>"$OUT" <<'PY'
import hashlib, math, os, statistics, sys, time
runs, rounds, seconds, core = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
os.sched_setaffinity(0, {core})
data = bytes(64 << 20)

def work(reps):
    """Wall and CPU seconds for `reps` hashes of the same 64 MiB."""
    wall, cpu = time.perf_counter(), time.thread_time()
    for _ in range(reps):
        hashlib.sha256(data).digest()
    return time.perf_counter() - wall, time.thread_time() - cpu

once = min(work(1)[0] for _ in range(3))
reps = max(1, round(seconds / once))
started = time.time()
rows = []
for run in range(runs):
    by_wall, by_cpu = [], []
    for r in range(rounds):
        order = "AB" if r % 2 == 0 else "BA"
        got = {cell: work(reps) for cell in order}
        by_wall.append(got["B"][0] / got["A"][0])
        by_cpu.append(got["B"][1] / got["A"][1])
    geo = lambda xs: math.exp(sum(map(math.log, xs)) / len(xs))
    rows.append((geo(by_wall), geo(by_cpu), min(by_wall), max(by_wall)))
    print(f"run {run + 1} of {runs}: {rows[-1][0]:.3f} by wall time", file=sys.stderr)

def widest(xs):
    return max(abs(x - 1) for x in xs)

print(f"\n## The machine's own floor: an A/A test\n")
print(f"`scripts/measure-noise-floor.sh`: the same CPU-bound work (SHA-256 of one 64 MiB buffer, "
      f"{reps} times, {once * reps:.1f} s) timed as A and as B in {rounds} interleaved rounds (AB BA …) "
      f"per run, pinned to core {core}, {runs} runs back to back ({time.time() - started:.0f} s). "
      "B/A is 1.00× by construction; the table is how far each run's estimate of it strayed.\n")
print("| run | B/A by wall time | B/A by CPU time | rounds' B/A by wall time, low–high |")
print("|---|---|---|---|")
for i, (w, c, lo, hi) in enumerate(rows):
    print(f"| {i + 1} | {w:.3f}× | {c:.3f}× | {lo:.3f}–{hi:.3f}× |")
walls, cpus = [r[0] for r in rows], [r[1] for r in rows]
print(f"\nAcross the {runs} runs, the A/A ratio strayed up to ±{widest(walls) * 100:.1f}% from 1.00× by wall "
      f"time and ±{widest(cpus) * 100:.1f}% by CPU time (median deviation {statistics.median(abs(w - 1) for w in walls) * 100:.1f}% "
      f"and {statistics.median(abs(c - 1) for c in cpus) * 100:.1f}%). A run's ratio of two different configurations "
      "cannot be steadier than this, whatever the server does.")
print(f"\n{time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}; {os.cpu_count()} cores; "
      + next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), 'CPU unknown'))
PY
echo "appended to $OUT" >&2
