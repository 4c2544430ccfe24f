#!/usr/bin/env python3
"""Draws docs/session-ready.svg from browser/latency.mjs's JSON (stdlib only).

    python3 scripts/plot.py [target/bench-results/session-ready.json] [docs/session-ready.svg]

Grouped bars: one group per method (no XMPP floor, injected page, POST /prebind,
normal Strophe connect()), one bar per emulated RTT, height = median
navigation-start -> first-ping-reply time, whisker = p10..p90, label = median.
"""

import json
import math
import sys
from html import escape

METHODS = [
    ("floor", "no XMPP (floor)"),
    ("injected", "injected page"),
    ("post", "POST /prebind"),
    ("connect", "Strophe connect()"),
]
# One colour per RTT, light to dark (colour-blind safe blues/oranges).
COLOURS = ["#9ecae1", "#3182bd", "#fdae6b", "#e6550d", "#a1d99b", "#31a354"]

WIDTH, HEIGHT = 760, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 60, 70


def nice_step(span, ticks=6):
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * power:
            return m * power
    return 10 * power


def main():
    source = sys.argv[1] if len(sys.argv) > 1 else "target/bench-results/session-ready.json"
    out = sys.argv[2] if len(sys.argv) > 2 else "docs/session-ready.svg"
    with open(source, encoding="utf-8") as f:
        data = json.load(f)
    rtts = data["rtts_ms"]
    summary = {(row["method"], row["rtt_ms"]): row for row in data["summary"]}
    methods = [(key, label) for key, label in METHODS if any((key, r) in summary for r in rtts)]

    top_value = max(row["p90_ms"] for row in data["summary"])
    step = nice_step(top_value)
    y_max = step * math.ceil(top_value / step)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def y(value):
        return TOP + plot_h - value / y_max * plot_h

    group_w = plot_w / len(methods)
    bar_w = min(56, group_w * 0.8 / len(rtts))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">'
        "Session-ready time in headless Chromium (navigation start → first ping reply)</text>",
        f'<text x="{WIDTH / 2}" y="40" text-anchor="middle" fill="#555">'
        f'median of {data["runs"]} runs per bar, whiskers p10–p90; Chromium {escape(data.get("chromium", "?"))}, '
        "emulated RTT, CM next to the web server</text>",
    ]
    # Grid and y axis.
    value = 0.0
    while value <= y_max + 1e-9:
        yy = y(value)
        parts.append(f'<line x1="{LEFT}" y1="{yy:.1f}" x2="{WIDTH - RIGHT}" y2="{yy:.1f}" stroke="#e5e5e5"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{yy + 4:.1f}" text-anchor="end" fill="#333">{value:g}</text>')
        value += step
    parts.append(
        f'<text x="16" y="{TOP + plot_h / 2}" text-anchor="middle" fill="#333" '
        f'transform="rotate(-90 16 {TOP + plot_h / 2})">milliseconds</text>'
    )
    parts.append(f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" stroke="#333"/>')

    for g, (key, label) in enumerate(methods):
        x0 = LEFT + g * group_w + (group_w - bar_w * len(rtts)) / 2
        for i, rtt in enumerate(rtts):
            row = summary.get((key, rtt))
            if row is None:
                continue
            x = x0 + i * bar_w
            colour = COLOURS[i % len(COLOURS)]
            top = y(row["median_ms"])
            parts.append(
                f'<rect x="{x + 2:.1f}" y="{top:.1f}" width="{bar_w - 4:.1f}" '
                f'height="{TOP + plot_h - top:.1f}" fill="{colour}">'
                f'<title>{escape(label)}, {rtt} ms RTT: median {row["median_ms"]:.0f} ms '
                f'(p10 {row["p10_ms"]:.0f}, p90 {row["p90_ms"]:.0f})</title></rect>'
            )
            cx = x + bar_w / 2
            lo, hi = y(row["p10_ms"]), y(row["p90_ms"])
            parts.append(f'<line x1="{cx:.1f}" y1="{lo:.1f}" x2="{cx:.1f}" y2="{hi:.1f}" stroke="#222"/>')
            for yy in (lo, hi):
                parts.append(f'<line x1="{cx - 5:.1f}" y1="{yy:.1f}" x2="{cx + 5:.1f}" y2="{yy:.1f}" stroke="#222"/>')
            parts.append(
                f'<text x="{cx:.1f}" y="{min(top, hi) - 5:.1f}" text-anchor="middle" fill="#111">'
                f'{row["median_ms"]:.0f}</text>'
            )
        parts.append(
            f'<text x="{LEFT + g * group_w + group_w / 2:.1f}" y="{TOP + plot_h + 20}" '
            f'text-anchor="middle" fill="#111">{escape(label)}</text>'
        )
    # Legend.
    lx = LEFT + 10
    for i, rtt in enumerate(rtts):
        colour = COLOURS[i % len(COLOURS)]
        parts.append(f'<rect x="{lx}" y="{HEIGHT - 28}" width="14" height="14" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 20}" y="{HEIGHT - 17}" fill="#111">{rtt} ms RTT</text>')
        lx += 110
    parts.append("</svg>")
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(parts) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
