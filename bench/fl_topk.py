#!/usr/bin/env python
"""Top-k selection benchmark: taskcodec's C++ top-k vs torch.topk, in one run.

Selects k = ratio * n elements of largest magnitude from n float32 values (default 25 M,
normal noise, seeded) at ratios 0.1 % and 1 %. Timed (median of --repeats after a warm-up):

* ``torch.topk``: ``torch.topk(x.abs(), k, sorted=False)`` (the abs is part of the job),
  with torch at 1 thread and at 2 threads;
* ``taskcodec``: ``tc.fl.topk_select(x, k)`` at threads=1 and threads=2: exact k, ties to
  the lower index, NaN/Inf checked, indices sorted ascending (torch's are not sorted);
* ``taskcodec compress``: the whole client step, ``TopKCompressor(ratio, "int8").compress``
  with error feedback (residual add, selection, int8 values, coded indices, CRC), threads=2.

Both selections are checked to pick the same set. Writes DIR/fl_topk.json and
DIR/fl_topk.png; prints a table. Run: python bench/fl_topk.py [--n 25000000] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine, machine_summary  # noqa: E402


def timeit(fn, repeats):
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=25_000_000)
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.001, 0.01])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args(argv)

    import torch

    from taskcodec import fl

    x = np.random.default_rng(0).standard_normal(args.n).astype(np.float32)
    xt = torch.from_numpy(x)
    rows = []
    for ratio in args.ratios:
        k = fl.topk_count(args.n, ratio)
        ours = fl.topk_select(x, k, threads=1)
        _, ti = torch.topk(xt.abs(), k, sorted=False)
        same = bool(np.array_equal(np.sort(ti.numpy().astype(np.uint32)), ours))
        row = {"ratio": ratio, "k": k, "same_selection": same}
        for th in (1, 2):
            torch.set_num_threads(th)
            row[f"torch_topk_t{th}_s"] = timeit(lambda: torch.topk(xt.abs(), k, sorted=False), args.repeats)
            row[f"taskcodec_t{th}_s"] = timeit(lambda: fl.topk_select(x, k, threads=th), args.repeats)
        comp = fl.TopKCompressor(ratio, "int8", threads=2)
        row["compress_int8_ef_t2_s"] = timeit(lambda: comp.compress(x), args.repeats)
        row["frame_bytes"] = len(comp.compress(x))
        row["speedup_t1"] = row["torch_topk_t1_s"] / row["taskcodec_t1_s"]
        row["speedup_t2"] = row["torch_topk_t2_s"] / row["taskcodec_t2_s"]
        rows.append(row)

    machine = describe_machine()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": "fl_topk", "n": args.n, "repeats": args.repeats, "rows": rows, "machine": machine,
              "target": "taskcodec >= 5x faster than torch.topk at 0.1 % of 25 M floats"}
    (out / "fl_topk.json").write_text(json.dumps(result, indent=2))

    print(f"top-k of {args.n:,} float32 on {machine_summary(machine)}")
    print(f"{'ratio':>7} {'k':>8} {'torch t1':>9} {'tc t1':>8} {'x':>5} {'torch t2':>9} {'tc t2':>8} {'x':>5}"
          f" {'compress':>9} {'frame':>9} same")
    for r in rows:
        print(f"{r['ratio']*100:6.1f}% {r['k']:8d} {r['torch_topk_t1_s']*1e3:7.1f}ms {r['taskcodec_t1_s']*1e3:6.1f}ms"
              f" {r['speedup_t1']:5.1f} {r['torch_topk_t2_s']*1e3:7.1f}ms {r['taskcodec_t2_s']*1e3:6.1f}ms"
              f" {r['speedup_t2']:5.1f} {r['compress_int8_ef_t2_s']*1e3:7.1f}ms {r['frame_bytes']:9d} {r['same_selection']}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.8))
    labels = [f"{r['ratio']*100:g} %" for r in rows]
    series = [("torch.topk, 1 thread", "torch_topk_t1_s"), ("torch.topk, 2 threads", "torch_topk_t2_s"),
              ("taskcodec, 1 thread", "taskcodec_t1_s"), ("taskcodec, 2 threads", "taskcodec_t2_s"),
              ("taskcodec compress (EF+int8+index), 2 thr.", "compress_int8_ef_t2_s")]
    w = 0.16
    for i, (name, key) in enumerate(series):
        ax.bar(np.arange(len(rows)) + (i - 2) * w, [r[key] * 1e3 for r in rows], w, label=name)
    ax.set_xticks(np.arange(len(rows)), labels)
    ax.set_xlabel(f"fraction of {args.n/1e6:g} M float32 selected")
    ax.set_ylabel("time (ms, median)")
    ax.set_title("top-k by magnitude")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "fl_topk.png", dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
