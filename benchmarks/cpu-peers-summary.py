#!/usr/bin/env python3
"""Summarises benchmarks/cpu-peers-ort.sh output: per shape, the median of the per-process medians of ours and of
each peer (with the per-round values in run order) and the ratio of the times, peer ÷ ours (above 1: ours faster)."""
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def key(r):
    if r["op"] == "int8-gemm":
        return f'int8 {r["m"]}x{r["n"]}x{r["k"]}'
    return f'attention D{r["head_dim"]}{" causal" if r["causal"] else ""}'
shapes = {}
for r in rows:
    shapes.setdefault(key(r), []).append(r)
print("| shape | ours ms (rounds) | peer | peer ms (rounds) | peer ms ÷ ours ms (> 1: ours faster) | after idle: peer ÷ ours | all verified | 1-min load |")
print("|---|---|---|---|---:|---:|---|---|")
for k, rs in shapes.items():
    ours = [r["median_ms"] for r in rs]
    # Only peers that ran the same op (the oneDNN sgemm rate beside attention is a yardstick, not a time to divide by).
    names = sorted({p["name"] for r in rs for p in r.get("peers", []) if p.get("median_ms") is not None and p.get("same_op", True)})
    loads = [r["load"].split()[0] for r in rs]
    for n in names:
        pm = [next(p["median_ms"] for p in r["peers"] if p["name"] == n) for r in rs]
        ver = all(r["verified"] and next(p for p in r["peers"] if p["name"] == n).get("verified", False) for r in rs)
        o, p = statistics.median(ours), statistics.median(pm)
        # The first call of each block, after the pause (kernels bench's Alternation), where the run recorded it.
        idle = [(next(q.get("after_idle_ms") for q in r["peers"] if q["name"] == n), r.get("median_ms_after_idle")) for r in rs]
        idle = [pa / oa for pa, oa in idle if pa and oa]
        after = f"{statistics.median(idle):.2f}" if idle else "–"
        print(f'| {k} | **{o:.4g}** ({", ".join(f"{x:.4g}" for x in ours)}) | {n} '
              f'| **{p:.4g}** ({", ".join(f"{x:.4g}" for x in pm)}) | {p / o:.2f} | {after} | {"yes" if ver else "NO"} | {", ".join(loads)} |')

packing = [(key(r), r["median_ms_packing_each_call"]) for r in rows if r.get("median_ms_packing_each_call") is not None]
if packing:
    print()
    print("ours packing the weights in every call (as dnnl_gemm_s8s8s32 does), median of the rounds:")
    for k in dict(packing):
        v = [x for kk, x in packing if kk == k]
        print(f'- {k}: {statistics.median(v):.4g} ms ({", ".join(f"{x:.4g}" for x in v)})')
