#!/usr/bin/env python3
"""Collects criterion's estimates (target/criterion/**/new/) into bench/results/criterion.json
and prints a Markdown table. Standard library only.

    python3 bench/criterion_summary.py [target/criterion] [bench/results/criterion.json]
"""
import json
import os
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"
out = sys.argv[2] if len(sys.argv) > 2 else "bench/results/criterion.json"


def fmt_time(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


rows = {}
for dirpath, dirnames, filenames in os.walk(root):
    if os.path.basename(dirpath) != "new" or "estimates.json" not in filenames:
        continue
    with open(os.path.join(dirpath, "benchmark.json")) as f:
        meta = json.load(f)
    with open(os.path.join(dirpath, "estimates.json")) as f:
        est = json.load(f)
    mean = est["mean"]["point_estimate"]
    median = est["median"]["point_estimate"]
    row = {
        "mean_ns": mean,
        "median_ns": median,
        "mean_ci_ns": [est["mean"]["confidence_interval"]["lower_bound"], est["mean"]["confidence_interval"]["upper_bound"]],
    }
    tp = meta.get("throughput")
    if tp:
        kind, n = next(iter(tp.items()))
        row["throughput"] = {kind: n}
        if kind == "Elements":
            row["elements_per_s"] = n / (mean / 1e9)
            row["ns_per_element"] = mean / n
        elif kind == "Bytes":
            row["bytes_per_s"] = n / (mean / 1e9)
    rows[meta["full_id"]] = row

os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
with open(out, "w") as f:
    json.dump(dict(sorted(rows.items())), f, indent=1)

print("| benchmark | mean | median | throughput |")
print("|---|---:|---:|---:|")
for name, r in sorted(rows.items()):
    tp = ""
    if "elements_per_s" in r:
        tp = f"{r['elements_per_s']:,.0f} /s ({fmt_time(r['ns_per_element'])} each)"
    elif "bytes_per_s" in r:
        tp = f"{r['bytes_per_s'] / 2**20:,.0f} MiB/s"
    print(f"| `{name}` | {fmt_time(r['mean_ns'])} | {fmt_time(r['median_ns'])} | {tp} |")
print(f"\n{len(rows)} benchmarks → {out}", file=sys.stderr)
