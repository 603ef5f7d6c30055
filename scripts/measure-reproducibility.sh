#!/usr/bin/env bash
# How far a default `flightbench run`'s headline ratios move between runs: RUNS
# consecutive runs (default 3), nothing else started meanwhile, and for each headline
# ratio (prepared/adhoc, raw/prepared, h2c/h1, each codec/identity, 16/1 shards for
# reads and for departures, cache on/off) every run's value and the largest deviation
# from their median. Runs that write run.json schema 2 give each ratio by throughput
# and by server CPU per request, and name the steadier; schema 1 (older builds) only
# by throughput, from the cells' rates.
#
#   scripts/measure-reproducibility.sh                          # this tree, default preset
#   BIN=/path/flightbench LABEL=before scripts/measure-reproducibility.sh
#   RUN_ARGS="--pin" LABEL="pinned" scripts/measure-reproducibility.sh
#
# Appends a section to results/reproducibility.md (OUT=) and leaves the runs' reports
# under $RESULTS (default: a scratch directory).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
OUT=${OUT:-results/reproducibility.md}
RUN_ARGS=${RUN_ARGS:-}
# shellcheck source=scripts/measure-lib.sh
source scripts/measure-lib.sh
measure_setup
LABEL=${LABEL:-"$commit"}
RESULTS=${RESULTS:-$work/runs}
mkdir -p "$RESULTS"

dirs=()
for i in $(seq "$RUNS"); do
    out="$RESULTS/run-$i"
    echo "run $i of $RUNS ($LABEL)" >&2
    started=$(date +%s)
    # shellcheck disable=SC2086
    "$bin" run --out "$out" $RUN_ARGS >"$work/run-$i.log" 2>&1 || { cat "$work/run-$i.log" >&2; exit 1; }
    echo "  took $(($(date +%s) - started)) s" >&2
    dirs+=("$out")
done

python3 - "$LABEL" "$RUN_ARGS" "$commit" "${dirs[@]}" >>"$OUT" <<'PY'
import json, statistics, sys
label, run_args, commit, dirs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
runs = [json.load(open(f"{d}/run.json")) for d in dirs]
pairs = [
    ("prepared/adhoc", "paths/prepared", "paths/adhoc"),
    ("raw/prepared", "paths/raw", "paths/prepared"),
    ("h2c/h1", "protocols/h2c", "protocols/h1"),
    ("br/identity", "compression/br", "compression/identity"),
    ("zstd/identity", "compression/zstd", "compression/identity"),
    ("gzip/identity", "compression/gzip", "compression/identity"),
    ("16/1 shards (reads)", "shards/read-16", "shards/read-1"),
    ("16/1 shards (departures)", "shards/departures-16", "shards/departures-1"),
    ("cache on/off", "cache/on", "cache/off"),
]

def figures(run, name, a, b):
    """(by throughput, by CPU or None, steadier or None) for one run."""
    for h in run.get("headlines", []):
        if h["name"] == name:
            cpu = h["cpu"]["estimate"] if h["cpu"] else None
            return h["throughput"]["estimate"], cpu, h["steadier"]
    cells = {c["id"]: c for c in run["cells"]}
    if a in cells and b in cells:
        return cells[a]["requests_per_s"] / cells[b]["requests_per_s"], None, None
    return None, None, None

def spread(values):
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return "—", None
    median = statistics.median(values)
    worst = max(abs(v / median - 1) for v in values)
    return f"{median:.2f}×", worst

settings = runs[0]["settings"]
pinned = settings.get("placement", {}).get("pinned", settings.get("pinned", False))
print(f"\n## {label}\n")
print(f"{len(runs)} consecutive `flightbench run{(' ' + run_args) if run_args else ''}` runs, preset {runs[0]['preset']}: "
      f"{settings.get('rounds', 1)} round(s) of {settings['measure_s']:g} s per cell, "
      f"{'pinned (server ' + str(settings['placement']['server_cores']) + ', load ' + str(settings['placement']['load_cores']) + ')' if pinned else 'not pinned'}; "
      f"each took {', '.join('%.0f s' % r['elapsed_s'] for r in runs)}. Commit {commit}.\n")
has_cpu = any(figures(runs[0], *p)[1] is not None for p in pairs)
head = "| headline | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " | median | widest from median |"
if has_cpu:
    print("By throughput, then by server CPU per request (each run's estimate over its rounds); **bold**: the steadier figure across the three runs.\n")
    print("| headline | figure | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " | median | widest from median |")
    print("|---|---|" + "---|" * len(runs) + "---|---|")
    worst_lead = 0.0
    for name, a, b in pairs:
        per = [figures(r, name, a, b) for r in runs]
        t = [p[0] for p in per]
        c = [p[1] for p in per]
        tm, tw = spread(t)
        cm, cw = spread(c)
        lead_is_cpu = cw is not None and tw is not None and cw < tw
        worst_lead = max(worst_lead, (cw if lead_is_cpu else tw) or 0.0)
        fmt = lambda w, bold: "—" if w is None else (f"**±{w * 100:.1f}%**" if bold else f"±{w * 100:.1f}%")
        print(f"| {name} | throughput | " + " | ".join("—" if v is None else f"{v:.2f}×" for v in t) + f" | {tm} | {fmt(tw, not lead_is_cpu)} |")
        print(f"| {name} | server CPU / request | " + " | ".join("—" if v is None else f"{v:.2f}×" for v in c) + f" | {cm} | {fmt(cw, lead_is_cpu)} |")
    print(f"\nThe steadier figure of every headline stayed within ±{worst_lead * 100:.1f}% of its median.")
else:
    print("By throughput (this build reports no CPU per request).\n")
    print(head)
    print("|---|" + "---|" * len(runs) + "---|---|")
    worst = 0.0
    for name, a, b in pairs:
        t = [figures(r, name, a, b)[0] for r in runs]
        tm, tw = spread(t)
        worst = max(worst, tw or 0.0)
        print(f"| {name} | " + " | ".join("—" if v is None else f"{v:.2f}×" for v in t) + f" | {tm} | {'—' if tw is None else f'±{tw * 100:.1f}%'} |")
    print(f"\nThe widest headline moved ±{worst * 100:.1f}% from its median.")
PY
echo "appended to $OUT" >&2
