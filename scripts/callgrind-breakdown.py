#!/usr/bin/env python3
"""Where a load generator's user-space instructions per request go, from two callgrind
profiles of the same command with different request counts (start-up cancels out).

Each function's own instructions (callgrind_annotate --inclusive=no; code inlined into
a function counts as that function's) are put in one of a few groups by name:
response parsing, the event loop and its tasks, the generator's own request loop,
clock reads, the latency record, libc and the rest.

    scripts/callgrind-breakdown.py SHORT.out LONG.out REQUESTS_SHORT REQUESTS_LONG
"""
import collections
import re
import subprocess
import sys

GROUPS = [
    (r"httparse::|http_parser", "HTTP response parsing (httparse; wrk: http_parser)"),
    (r"Timespec|clock_gettime|gettimeofday", "clock reads"),
    (r"hdrhistogram|stats_", "latency record"),
    (r"tokio::|mio::|ae[A-Z]", "event loop, readiness, tasks, timers (tokio; wrk: ae)"),
    (r"flightbench::|^0x|sock_", "the generator's own request loop"),
    (r"", "libc and the rest"),
]


def self_costs(profile):
    """Instructions per function, as callgrind_annotate prints them."""
    out = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--threshold=100", "--auto=no", profile],
        capture_output=True, text=True, check=True,
    ).stdout
    costs = collections.Counter()
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+(.*)", line)
        if m and "PROGRAM TOTALS" not in line:
            name = m.group(2).split(":", 1)[-1]
            costs[re.sub(r"\s*\[.*\]$", "", name)] += int(m.group(1).replace(",", ""))
    return costs


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    short, long_ = self_costs(sys.argv[1]), self_costs(sys.argv[2])
    requests = int(sys.argv[4]) - int(sys.argv[3])
    if requests <= 0:
        sys.exit("error: the long run must have more requests than the short one")
    groups = collections.Counter()
    for function in set(short) | set(long_):
        group = next(name for pattern, name in GROUPS if re.search(pattern, function))
        groups[group] += (long_[function] - short[function]) / requests
    print(f"| group | instructions / request |\n|---|---|")
    for group, cost in groups.most_common():
        print(f"| {group} | {cost:.0f} |")
    print(f"| total | {sum(groups.values()):.0f} |")


if __name__ == "__main__":
    main()
