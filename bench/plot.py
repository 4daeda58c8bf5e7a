#!/usr/bin/env python3
"""Draws the bench plots as SVG from bench/results/*.jsonl, with the standard library only.

    python3 bench/plot.py [bench/results] [bench]

- throughput-latency.svg: end-to-end latency (p50, p99) against deliveries per second, from the
  `load` runs (one line per store);
- join-latency.svg: join latency (p50) against history length, from the `join` runs (cold and warm,
  per document kind).
"""
import glob
import json
import math
import os
import sys

results = sys.argv[1] if len(sys.argv) > 1 else "bench/results"
outdir = sys.argv[2] if len(sys.argv) > 2 else "bench"

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def read(pattern):
    rows = []
    for path in sorted(glob.glob(os.path.join(results, pattern))):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    rows.append(json.loads(line))
    return rows


def nice_ticks(lo, hi, n=5):
    if hi <= lo:
        hi = lo + 1
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    t = math.floor(lo / step) * step
    ticks = [round(t, 10)]
    while ticks[-1] < hi - step * 1e-9:
        t += step
        ticks.append(round(t, 10))
    return ticks


class Chart:
    def __init__(self, title, xlabel, ylabel, xlog=False, ylog=False, w=720, h=440):
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
        self.xlog, self.ylog = xlog, ylog
        self.w, self.h = w, h
        self.m = dict(l=70, r=200, t=40, b=55)
        self.series = []  # (label, color, dash, points)
        self.hlines = []  # (y, label)

    def add(self, label, points, color, dash=""):
        pts = sorted((x, y) for x, y in points if x is not None and y is not None)
        if pts:
            self.series.append((label, color, dash, pts))

    def hline(self, y, label):
        self.hlines.append((y, label))

    def _scale(self, v, lo, hi, a, b, log):
        if log:
            v, lo, hi = math.log10(v), math.log10(lo), math.log10(hi)
        return a + (v - lo) / (hi - lo) * (b - a) if hi != lo else (a + b) / 2

    def svg(self):
        xs = [x for s in self.series for x, _ in s[3]]
        ys = [y for s in self.series for _, y in s[3]] + [y for y, _ in self.hlines]
        if not xs:
            return None
        m = self.m
        x0, x1 = m["l"], self.w - m["r"]
        y0, y1 = self.h - m["b"], m["t"]
        if self.xlog:
            xlo, xhi = 10 ** math.floor(math.log10(min(xs))), 10 ** math.ceil(math.log10(max(xs)))
            xticks = [10 ** e for e in range(int(math.log10(xlo)), int(math.log10(xhi)) + 1)]
        else:
            xticks = nice_ticks(0, max(xs) * 1.05)
            xlo, xhi = xticks[0], xticks[-1]
        if self.ylog:
            ylo = 10 ** math.floor(math.log10(max(min(ys), 1e-3)))
            yhi = 10 ** math.ceil(math.log10(max(ys)))
            yticks = [10 ** e for e in range(int(math.log10(ylo)), int(math.log10(yhi)) + 1)]
        else:
            yticks = nice_ticks(0, max(ys) * 1.1)
            ylo, yhi = yticks[0], yticks[-1]
        X = lambda v: self._scale(v, xlo, xhi, x0, x1, self.xlog)
        Y = lambda v: self._scale(v, ylo, yhi, y0, y1, self.ylog)
        o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.w}" height="{self.h}" font-family="sans-serif" font-size="12">',
             f'<rect width="{self.w}" height="{self.h}" fill="white"/>',
             f'<text x="{self.w / 2 - m["r"] / 2}" y="22" text-anchor="middle" font-size="15">{self.title}</text>']
        for t in xticks:
            x = X(t)
            o.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y1}" stroke="#e5e5e5"/>')
            o.append(f'<text x="{x:.1f}" y="{y0 + 16}" text-anchor="middle">{t:g}</text>')
        for t in yticks:
            y = Y(t)
            o.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#e5e5e5"/>')
            o.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{t:g}</text>')
        o.append(f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="none" stroke="#333"/>')
        o.append(f'<text x="{(x0 + x1) / 2}" y="{self.h - 15}" text-anchor="middle">{self.xlabel}</text>')
        o.append(f'<text transform="translate(18,{(y0 + y1) / 2}) rotate(-90)" text-anchor="middle">{self.ylabel}</text>')
        for y, label in self.hlines:
            if ylo <= y <= yhi:
                o.append(f'<line x1="{x0}" y1="{Y(y):.1f}" x2="{x1}" y2="{Y(y):.1f}" stroke="#888" stroke-dasharray="2,3"/>')
                o.append(f'<text x="{x1 - 4}" y="{Y(y) - 4:.1f}" text-anchor="end" fill="#666">{label}</text>')
        for i, (label, color, dash, pts) in enumerate(self.series):
            path = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in pts)
            da = f' stroke-dasharray="{dash}"' if dash else ""
            o.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{da}/>')
            for x, y in pts:
                o.append(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="3" fill="{color}"/>')
            ly = m["t"] + 10 + 18 * i
            o.append(f'<line x1="{x1 + 12}" y1="{ly}" x2="{x1 + 36}" y2="{ly}" stroke="{color}" stroke-width="2"{da}/>')
            o.append(f'<text x="{x1 + 42}" y="{ly + 4}">{label}</text>')
        o.append("</svg>")
        return "\n".join(o)


def write(chart, name):
    svg = chart.svg()
    if svg is None:
        print(f"no data for {name}", file=sys.stderr)
        return
    path = os.path.join(outdir, name)
    with open(path, "w") as f:
        f.write(svg + "\n")
    print(f"wrote {path}", file=sys.stderr)


# Throughput vs latency: load runs of the 50 × 4 shape (rate sweep), per store.
loads = [r for r in read("load*.jsonl") if r.get("mode") == "load" and not r.get("content") and not r.get("pg_options")]
chart = Chart("End-to-end latency vs delivered updates (50 docs × 4 editors)", "deliveries per second",
              "latency (ms, log)", ylog=True)
by_store = {}
for r in loads:
    if r.get("docs") == 50 and r.get("editors_per_doc") == 4:
        by_store.setdefault(r.get("store", "?"), []).append(r)
for i, (store, rows) in enumerate(sorted(by_store.items())):
    c = COLORS[i % len(COLORS)]
    chart.add(f"{store} p50", [(r["deliveries_per_s"], r["latency_ms"]["p50"]) for r in rows], c, "5,4")
    chart.add(f"{store} p99", [(r["deliveries_per_s"], r["latency_ms"]["p99"]) for r in rows], c)
chart.hline(10, "target p99 10 ms")
write(chart, "throughput-latency.svg")

# Join latency vs history length: "grow" documents (content grows with the history) and "steady"
# ones (same small content, history grows); "fresh" documents (the grow content as one update) lie
# on the grow lines and are left out for legibility.
joins = [r for r in read("join*.jsonl") if r.get("mode") == "join"]
chart = Chart("Join latency (ydoc:document:join → state) vs history", "updates of history (log)",
              "p50 latency (ms, log)", xlog=True, ylog=True)
series = {}
for r in joins:
    for d in r["docs"]:
        if d["kind"] == "fresh":
            continue
        for temp in ("cold", "warm"):
            series.setdefault((r.get("store", "?"), d["kind"], temp), []).append((d["history"], d[f"{temp}_ms"]["p50"]))
for i, ((store, kind, temp), pts) in enumerate(sorted(series.items())):
    label = f"{store} {kind} {temp}"
    chart.add(label, pts, COLORS[i % len(COLORS)], "" if temp == "cold" else "5,4")
chart.hline(2, "target 2 ms")
write(chart, "join-latency.svg")
