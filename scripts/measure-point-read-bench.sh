#!/usr/bin/env bash
# `cargo bench --bench http`'s point reads (http/point_read: the fixed-body ceiling,
# a cache hit, and a read through the store on the raw and prepared paths, over
# HTTP/1.1 and h2c), for this tree and an older commit, in interleaved rounds
# (before, after, after, before, …) so that both see the same machine. Each arm's
# time is criterion's median per request; the table gives each arm's after/before
# ratio per round and their median, and the same normalised by the ceiling arm of the
# same bench run (a server that answers a fixed body, whose code neither change
# touches), which takes out what the machine did between the two runs.
#
#   git worktree add ../baseline eef9fa0
#   BEFORE_TREE=../baseline scripts/measure-point-read-bench.sh
#   BEFORE_TREE=../baseline ROUNDS=3 OUT=/tmp/bench.md scripts/measure-point-read-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE_TREE=${BEFORE_TREE:?set BEFORE_TREE to a worktree of the older commit (git worktree add ../baseline COMMIT)}
ROUNDS=${ROUNDS:-2}
OUT=${OUT:-/dev/stdout}
[ -f "$BEFORE_TREE/benches/http.rs" ] || { echo "error: $BEFORE_TREE has no benches/http.rs" >&2; exit 1; }
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The bench executable of a tree, built in this tree's target directory (one build of
# the dependencies for both trees).
bench_exe() {
    (cd "$1" && CARGO_TARGET_DIR=$target cargo bench --bench http --no-run --message-format json 2>/dev/null) |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "http" and m.get("executable"):
        print(m["executable"])'
}
echo "building the benches of $BEFORE_TREE and of this tree" >&2
before_exe=$(bench_exe "$BEFORE_TREE")
after_exe=$(bench_exe .)
cp "$before_exe" "$work/before" && cp "$after_exe" "$work/after"
before_commit=$(git -C "$BEFORE_TREE" rev-parse --short HEAD)
after_commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src benches || echo "+changes")

started=$(date +%s)
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order="before after"; else order="after before"; fi
    for which in $order; do
        echo "round $round of $ROUNDS: $which" >&2
        CRITERION_HOME="$work/$which-$round" "$work/$which" --bench 'http/point_read' >"$work/$which-$round.log" 2>&1 ||
            { cat "$work/$which-$round.log" >&2; exit 1; }
    done
done
elapsed=$(($(date +%s) - started))

python3 - "$work" "$ROUNDS" "$before_commit" "$after_commit" "$elapsed" >>"$OUT" <<'PY'
import json, os, statistics, sys
work, rounds, before, after, elapsed = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
arms = ["ceiling", "cache_hit", "store_raw", "store_prepared"]

def median_ns(which, r, arm, proto):
    path = os.path.join(work, f"{which}-{r}", "http_point_read", arm, proto, "new", "estimates.json")
    with open(path) as f:
        return json.load(f)["median"]["point_estimate"]

print(f"\n## `cargo bench --bench http`: point reads, {before} against {after}\n")
print(f"`BEFORE_TREE=<worktree of {before}> ROUNDS={rounds} scripts/measure-point-read-bench.sh`: "
      f"{rounds} interleaved rounds of each build's http/point_read group ({elapsed} s). Times are "
      "criterion's median per request (one client, one request at a time, 1,000,000 flights in 8 SQLite "
      "shards); \"vs ceiling\" divides each arm by the fixed-body ceiling of the same bench run.\n")
print("| arm | before | after | after/before by round | median | vs ceiling: after/before |")
print("|---|---|---|---|---|---|")
for proto in ["h1", "h2c"]:
    for arm in arms:
        b = [median_ns("before", r, arm, proto) for r in range(1, rounds + 1)]
        a = [median_ns("after", r, arm, proto) for r in range(1, rounds + 1)]
        cb = [median_ns("before", r, "ceiling", proto) for r in range(1, rounds + 1)]
        ca = [median_ns("after", r, "ceiling", proto) for r in range(1, rounds + 1)]
        ratios = [x / y for x, y in zip(a, b)]
        normalised = [(x / cx) / (y / cy) for x, y, cx, cy in zip(a, b, ca, cb)]
        norm = "—" if arm == "ceiling" else f"{statistics.median(normalised):.3f}×"
        print(f"| {arm} {proto} | {statistics.median(b) / 1000:.1f} µs | {statistics.median(a) / 1000:.1f} µs | "
              f"{', '.join(f'{x:.3f}' for x in ratios)} | {statistics.median(ratios):.3f}× | {norm} |")
print(f"\n{os.cpu_count()} cores, nothing pinned (criterion's default); "
      + next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), 'CPU unknown'))
PY
echo "written to $OUT" >&2
