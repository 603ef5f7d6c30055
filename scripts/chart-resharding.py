#!/usr/bin/env python3
"""Charts a scripts/measure-resharding.sh output (results/resharding/*.txt) as SVG:
throughput and p99 of each window over time, coloured by phase, the rate offered as
a dashed line.

  scripts/chart-resharding.py results/resharding/sqlite-1m-8to16-nice19.txt > results/resharding/sqlite-1m-8to16-nice19.svg
"""
import re, sys

COLOURS = {"before": "#1f77b4", "during": "#d62728", "after": "#2ca02c"}
W, PANEL, LEFT, RIGHT, TOP, GAP = 720, 200, 64, 16, 40, 56


def read(path):
    title, offered, rows = "", None, []
    for line in open(path):
        if line.startswith("# commit"):
            title = line[2:].strip()
            m = re.search(r"open loop at (\d+) req/s", line)
            offered = float(m.group(1)) if m else None
        m = re.match(r"\s*(\d+) (before|during|after)\s+([\d.]+)\s+(\d+)\s+([\d.]+)", line)
        if m:
            rows.append((m.group(2), float(m.group(3)), float(m.group(4)), float(m.group(5))))
    if not rows:
        sys.exit(f"{path}: no windows")
    t0 = rows[0][1]
    return title, offered, [(phase, t - t0, rate, p99) for phase, t, rate, p99 in rows]


def nice_top(v):
    for mag in range(0, 7):
        for step in (1, 2, 2.5, 5):
            top = step * 10 ** mag
            if top >= v:
                return top
    return v


def panel(out, rows, y0, index, label, top, x_max, offered=None):
    plot_w = W - LEFT - RIGHT
    px = lambda x: LEFT + x / x_max * plot_w
    py = lambda y: y0 + PANEL - min(y, top) / top * PANEL
    out.append(f'<text x="{LEFT}" y="{y0 - 8}" font-weight="bold">{label}</text>')
    for i in range(5):
        v = top * i / 4
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{py(v):.1f}" y2="{py(v):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{py(v) + 4:.1f}" text-anchor="end">{v:,.0f}</text>')
    if offered:
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{py(offered):.1f}" y2="{py(offered):.1f}" stroke="#888" stroke-dasharray="4 3"/>')
    for phase, colour in COLOURS.items():
        points = " ".join(f"{px(t):.1f},{py(r[index]):.1f}" for r in rows if r[0] == phase for t in [r[1]])
        if points:
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>')


def main():
    title, offered, rows = read(sys.argv[1])
    x_max = max(r[1] for r in rows) or 1
    rate_top = nice_top(max(max(r[2] for r in rows), offered or 0) * 1.05)
    p99_top = nice_top(max(r[3] for r in rows) * 1.05)
    height = TOP + 2 * PANEL + GAP + 48
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {height}" width="{W}" height="{height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{height}" fill="white"/>',
           f'<text x="{LEFT}" y="16" font-size="12">{title[:110]}</text>']
    panel(out, rows, TOP + 10, 2, "responses per second per window (dashed: offered)", rate_top, x_max, offered)
    panel(out, rows, TOP + PANEL + GAP, 3, "p99 latency per window, ms", p99_top, x_max)
    base = TOP + 2 * PANEL + GAP
    for i in range(6):
        t = x_max * i / 5
        x = LEFT + t / x_max * (W - LEFT - RIGHT)
        out.append(f'<text x="{x:.1f}" y="{base + 16}" text-anchor="middle">{t:.0f} s</text>')
    for i, (phase, colour) in enumerate(COLOURS.items()):
        x = LEFT + i * 150
        out.append(f'<rect x="{x}" y="{base + 28}" width="12" height="4" fill="{colour}"/><text x="{x + 16}" y="{base + 34}">{phase} the reshard</text>')
    out.append("</svg>")
    print("\n".join(out))


if __name__ == "__main__":
    main()
