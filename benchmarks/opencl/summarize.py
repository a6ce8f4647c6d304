#!/usr/bin/env python3
"""Medians per (op, shape, backend) of the JSON lines written by bench-pocl.sh, as a Markdown table."""
import json, statistics, sys
from collections import defaultdict

rows = defaultdict(list)
loads = []
for line in open(sys.argv[1]):
    r = json.loads(line)
    loads.append(r["load1"])
    if r["op"] == "attention":
        shape = f'b{r["batch"]} h{r["heads"]} seq {r["seq"]} d{r["head_dim"]}' + (" causal" if r["causal"] else "")
    elif r["op"] == "sparse-gemm":
        shape = f'{r["format"]} {r["requested_sparsity"]:.0%} {r["m"]}×{r["n"]}×{r["k"]}'
    else:
        shape = f'{r["m"]}×{r["n"]}×{r["k"]}'
    rows[(r["op"], shape)].append(r)

print(f"load average (1 min) during the runs: {min(loads)}–{max(loads)}\n")
print("| op | shape | backend | runs | median ms (min–max) | verified | kernel / note |")
print("|---|---|---|---:|---|---|---|")
for (op, shape), results in rows.items():
    by_backend = defaultdict(list)
    for r in results:
        by_backend[r["backend"]].append(r)
    for backend, rs in by_backend.items():
        ms = [r["median_ms"] for r in rs]
        note = rs[0].get("sparse_kernel") or rs[0].get("kernel") or ""
        if op == "sparse-gemm":
            dense = statistics.median(r["dense_median_ms"] for r in rs)
            note = f'dense int8 same backend {dense:.3g} ms; {note}'
        print(f'| {op} | {shape} | {backend} | {len(ms)} | {statistics.median(ms):.4g} ({min(ms):.4g}–{max(ms):.4g}) '
              f'| {all(r["verified"] for r in rs)} | {note} |')
