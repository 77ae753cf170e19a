#!/usr/bin/env python
"""Count sketches of a model update: taskcodec's core against a torch implementation in the
style of FetchSGD's ``CSVec``, in one run.

Both sketch the same float32 vector (``--n``, default 25 M values) into ``--rows`` x ``--cols``
and query every element's estimate (median over rows). The torch peer stores its buckets and
signs as tensors (``rows x n`` int64 and float32, computed once, outside the timing, as CSVec
does) and uses ``index_add_`` and ``torch.median``; taskcodec hashes on the fly (integer
splitmix64, nothing stored) in C++. Medians of ``--repeats`` runs; ``--threads`` for both.
The figure that matters for federated learning: sketching must take well under a local epoch.

Run: python bench/fl_sketch.py [--n 25000000] [--rows 5] [--cols 500000] [--repeats 5] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine  # noqa: E402
from fl_topk import timeit  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=25_000_000)
    ap.add_argument("--rows", type=int, default=5)
    ap.add_argument("--cols", type=int, default=500_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args(argv)

    import torch

    from taskcodec import _core
    from taskcodec.fl import CountSketch

    torch.set_num_threads(args.threads)
    x = np.random.default_rng(0).standard_normal(args.n).astype(np.float32)
    sk = CountSketch(args.n, rows=args.rows, cols=args.cols, seed=1)
    table = sk.zeros()

    def tc_sketch():
        table[:] = 0
        _core.sketch_accumulate(x, table, sk.rows, sk.cols, sk.seed, args.threads)

    def tc_query():
        return _core.sketch_query(table, sk.n, sk.rows, sk.cols, sk.seed, args.threads)

    g = torch.Generator().manual_seed(1)
    buckets = torch.randint(0, args.cols, (args.rows, args.n), generator=g)
    signs = torch.randint(0, 2, (args.rows, args.n), generator=g).float() * 2 - 1
    xt = torch.from_numpy(x)
    ttable = torch.zeros(args.rows, args.cols)

    def torch_sketch():
        ttable.zero_()
        for r in range(args.rows):
            ttable[r].index_add_(0, buckets[r], signs[r] * xt)

    def torch_query():
        vals = torch.stack([ttable[r][buckets[r]] * signs[r] for r in range(args.rows)])
        return vals.median(dim=0).values

    tc_sketch()
    torch_sketch()
    rows = []
    for what, ours, peer in (("sketch", tc_sketch, torch_sketch), ("query", tc_query, torch_query)):
        t_ours, t_peer = timeit(ours, args.repeats), timeit(peer, args.repeats)
        rows.append({"op": what, "taskcodec_s": t_ours, "torch_s": t_peer, "speedup": t_peer / t_ours})
        print(f"{what:>6}: taskcodec {t_ours * 1e3:8.1f} ms   torch (CSVec style) {t_peer * 1e3:8.1f} ms   "
              f"{t_peer / t_ours:5.2f}x", flush=True)
    extra = (buckets.element_size() * buckets.numel() + signs.element_size() * signs.numel()) / 2 ** 20
    print(f"torch keeps its hashes: {extra:.0f} MiB; taskcodec computes them on the fly")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fl_sketch.json").write_text(json.dumps(
        {"benchmark": "fl_sketch", "args": {k: v for k, v in vars(args).items() if k != "out"}, "rows": rows, "torch_hash_mib": extra,
         "machine": describe_machine()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
