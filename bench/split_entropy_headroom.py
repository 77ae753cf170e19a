#!/usr/bin/env python
"""How many bytes a better entropy model could still take off the split codecs' frames.

The split codecs code each latent channel with one static table. Two kinds of entropy model
could do better: forward-adaptive scales (a hyperprior's idea: side information picks a sharper
or flatter distribution per channel and block) and spatial context (a checkerboard context
model's idea: half the positions are coded first, the other half predicted from their four
decoded neighbours). This benchmark measures both on the symbols of the codecs that ship, on the
same photos and views as ``bench/split_codecs.py`` (same seed, same draws), before anyone builds
either into the stream format.

Every figure is an ideal code length in bits per latent element of the evaluation views: the
negative log2 probability of each symbol under a table estimated from the calibration views'
symbols (add-0.01 smoothing), so the estimate never sees the symbols it is scored on (the
scale rows' side information excepted, below). Rows:

- ``frame``: the real coder's frames (header and checksum included), bits per element.
- ``static``: one table per channel, which is what the frames code (the real coder adds its
  header and its tables' 14-bit precision).
- ``scales/<b>``: per channel and per ``b × b`` block of positions, one of 24 discretized
  Laplace scales around the channel's median, plus the class indices as side information (one
  adaptive table per channel); each block's choice weighs its payload and its index's code
  length, in a few rounds (a small block pays for a rare class). The indices are costed at
  their own empirical entropy on the evaluation views, which favours this row. ``b = 14`` is
  one scale per channel and image.
- ``checkerboard``: positions with even ``row + col`` under the static tables; the others as the
  residual from the rounded mean of their four neighbours (integers only, so a decoder
  reproduces it bit-exactly), with a residual table per channel. A second frame's header is not
  counted. ``checkerboard+spread``: the residual's table also depends on how far apart the four
  neighbours are (3 classes), so flat and busy regions get their own tables.

Run:   python bench/split_entropy_headroom.py [--model NAME] [--out DIR] [--task-bits ...]
       python bench/split_entropy_headroom.py --quick       (a smoke run)
Writes DIR/split_entropy_headroom_<model>.json and prints the table.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine  # noqa: E402
from split_codecs import (DEFAULT_CUTS, batched, code_each, draw_views,  # noqa: E402
                          photo_sets, view_arguments)

import taskcodec as tc  # noqa: E402
from taskcodec.nn.transforms import tail_fisher  # noqa: E402
from taskcodec.zoo import models  # noqa: E402

SCALES = np.exp(np.linspace(np.log(0.05), np.log(20.0), 24))
BLOCKS = (14, 7, 2)
ITERATIONS = 5  # rounds of choosing the blocks' classes against the classes' own code lengths


def code_bits(train: np.ndarray, test: np.ndarray) -> float:
    """Total ideal bits of integer ``test`` under the histogram of ``train`` (add-0.01)."""
    train, test = np.asarray(train).ravel(), np.asarray(test).ravel()
    lo = int(min(train.min(), test.min()))
    counts = np.bincount(train - lo, minlength=int(max(train.max(), test.max())) - lo + 1) + 0.01
    return float(-np.log2(counts / counts.sum())[test - lo].sum())


def laplace_bits(q: np.ndarray, mu: float, scale: float) -> np.ndarray:
    """Bits of each integer in ``q`` under a Laplace(``mu``, ``scale``) discretized to unit
    bins (probabilities floored at 2**-16, as a 16-bit table would)."""
    def cdf(x: np.ndarray) -> np.ndarray:
        e = np.exp(-np.abs(x) / scale)
        return np.where(x < 0, 0.5 * e, 1.0 - 0.5 * e)

    d = q - mu
    return -np.log2(np.maximum(cdf(d + 0.5) - cdf(d - 0.5), 2.0 ** -16))


def static_bits(q_cal: np.ndarray, q_ev: np.ndarray) -> float:
    """Bits per element of ``q_ev [N, C, H, W]`` under one table per channel from ``q_cal``."""
    return sum(code_bits(q_cal[:, c], q_ev[:, c]) for c in range(q_ev.shape[1])) / q_ev.size


def scale_bits(q_cal: np.ndarray, q_ev: np.ndarray, block: int) -> Dict[str, float]:
    """Forward-adaptive scales per channel and ``block × block`` positions (side info included):
    ``{"bits": total per element, "side": side information per element}``."""
    n, c_, h, w = q_ev.shape
    if h % block or w % block:
        raise ValueError(f"block {block} does not tile {h}×{w}")
    mu = np.median(q_cal.transpose(1, 0, 2, 3).reshape(c_, -1), axis=1)
    payload = side = 0.0
    for c in range(c_):
        blocks = q_ev[:, c].reshape(n, h // block, block, w // block, block).astype(np.float64)
        cost = np.stack([laplace_bits(blocks, mu[c], s).sum(axis=(2, 4)) for s in SCALES])
        counts = np.ones(len(SCALES))
        for _ in range(ITERATIONS):  # each block's choice pays for its class index too
            class_bits = -np.log2(counts / counts.sum())
            k = (cost + class_bits.reshape(-1, 1, 1, 1)).argmin(0)
            counts = np.bincount(k.ravel(), minlength=len(SCALES)) + 0.01
        payload += float(np.take_along_axis(cost, k[None], 0).sum())
        used = np.bincount(k.ravel())
        used = used[used > 0]
        side += float(-(used * np.log2(used / used.sum())).sum())  # an adaptive table's cost
    return {"bits": (payload + side) / q_ev.size, "side": side / q_ev.size}


def neighbours(q: np.ndarray) -> np.ndarray:
    """``[4, N, C, H, W]``: the up, down, left and right neighbours of every position of
    ``q [N, C, H, W]``; at an edge the missing neighbour is mirrored (the one a step inward)."""
    p = np.pad(q.astype(np.int64), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    return np.stack([p[:, :, :-2, 1:-1], p[:, :, 2:, 1:-1], p[:, :, 1:-1, :-2], p[:, :, 1:-1, 2:]])


def checkerboard_bits(q_cal: np.ndarray, q_ev: np.ndarray) -> Dict[str, float]:
    """Bits per element with half the positions predicted from their four neighbours:
    ``{"checkerboard": one residual table per channel, "checkerboard+spread": the residual's
    table also chosen by the neighbours' spread}``.

    The prediction is the rounded mean ``floor((up + down + left + right + 2) / 4)``, the spread
    ``max - min`` of the four clipped to 0, 1, 2. The neighbours of an odd position, mirrored
    ones included, are all even positions, so a decoder has them before it needs either."""
    h, w = q_ev.shape[2:]
    yy, xx = np.mgrid[:h, :w]
    odd = (yy + xx) % 2 == 1
    anchors = plain = spread = 0.0
    for c in range(q_ev.shape[1]):
        anchors += code_bits(q_cal[:, c][:, ~odd], q_ev[:, c][:, ~odd])
        (rc, kc), (re, ke) = (_residual_and_spread(q[:, c:c + 1], odd) for q in (q_cal, q_ev))
        plain += code_bits(rc, re)
        for k in np.unique(ke):
            train = rc[kc == k] if (kc == k).any() else rc  # a class never calibrated: all
            spread += code_bits(train, re[ke == k])
    return {"checkerboard": (anchors + plain) / q_ev.size,
            "checkerboard+spread": (anchors + spread) / q_ev.size}


def _residual_and_spread(q: np.ndarray, odd: np.ndarray) -> Any:
    """The odd positions' residuals from the neighbours' rounded mean, and their spread class."""
    nb = neighbours(q)
    residual = q - np.floor_divide(nb.sum(0) + 2, 4)
    return residual[..., odd], np.minimum(nb.max(0) - nb.min(0), 2)[..., odd]


def headroom_row(label: str, q_cal: np.ndarray, q_ev: np.ndarray,
                 frame_bytes: float) -> Dict[str, Any]:
    """One row: the frames' real bits per element and every ideal estimate."""
    per_image = q_ev[0].size
    row: Dict[str, Any] = {"codec": label, "frame_bytes": frame_bytes,
                           "frame": 8 * frame_bytes / per_image, "static": static_bits(q_cal, q_ev)}
    blocks = [b for b in BLOCKS if q_ev.shape[2] % b == 0 and q_ev.shape[3] % b == 0]
    for b in blocks:
        s = scale_bits(q_cal, q_ev, b)
        row[f"scales/{b}"], row[f"scales/{b} side"] = s["bits"], s["side"]
    row.update(checkerboard_bits(q_cal, q_ev))
    best = min(v for k, v in row.items() if k.startswith("checkerboard") or (
        k.startswith("scales/") and not k.endswith("side")))
    row["best_saving_vs_static"] = 1.0 - best / row["static"]
    return row


def table(rows: List[Dict[str, Any]]) -> str:
    keys = (["frame", "static"] + [f"scales/{b}" for b in BLOCKS]
            + ["checkerboard", "checkerboard+spread"])
    out = ["| codec | B/frame | " + " | ".join(keys) + " | best saving |",
           "|---|---:|" + "---:|" * (len(keys) + 1)]
    for r in rows:
        cells = [f"{r[k]:.3f}" if k in r else "" for k in keys]
        out.append(f"| {r['codec']} | {r['frame_bytes']:,.0f} | " + " | ".join(cells)
                   + f" | {100 * r['best_saving_vs_static']:.1f} % |")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> Dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    view_arguments(ap)
    ap.add_argument("--task-bits", type=float, nargs="*", default=[1.0, 1.5, 2.0, 4.0],
                    help='rates of FeatureCodec(transform="task") (bits/element)')
    ap.add_argument("--bits", type=float, nargs="*", default=[1.5],
                    help="rates of FeatureCodec with per-channel steps (bits/element)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    if args.quick:
        args.train_views, args.val_views, args.task_bits, args.bits = 2, 2, [1.5], []
    args.out.mkdir(parents=True, exist_ok=True)

    model, prep = models.load_model(args.model)
    cut = DEFAULT_CUTS[args.model]
    source, cal_imgs, ev_imgs = photo_sets(args.source, args.quick)
    cal_u8, ev_u8 = draw_views(cal_imgs, ev_imgs, args.train_views, args.val_views, args.seed, prep)
    head, tail = tc.split.partition(model, cut)
    f_cal = batched(head, models.normalize(cal_u8, prep))
    f_ev = batched(head, models.normalize(ev_u8, prep))

    rows: List[Dict[str, Any]] = []
    fisher = tail_fisher(f_cal, tail, target="sampled") if args.task_bits else None
    for label, rates, kw in (("FeatureCodec per channel", args.bits, {}),
                             ("FeatureCodec task", args.task_bits,
                              {"transform": "task", "tail": fisher})):
        for b in rates:
            codec = tc.nn.FeatureCodec.calibrate(f_cal, bits=b, params_in_frame=False, **kw)
            rows.append(headroom_row(f"{label} {b:g} bits", codec.quantize(f_cal),
                                     codec.quantize(f_ev), code_each(codec, f_ev)[0]))
    if args.model in tc.nn.SplitCodec.available():
        sc = tc.nn.SplitCodec.pretrained(args.model)
        rows.append(headroom_row("SplitCodec (shipped)", sc.bottleneck.symbols(f_cal),
                                 sc.bottleneck.symbols(f_ev), code_each(sc, f_ev)[0]))
    result = {
        "benchmark": "split_entropy_headroom",
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": describe_machine(),
        "settings": {"model": args.model, "cut": cut, "photo_source": source, "seed": args.seed,
                     "calibration_views": len(cal_u8), "evaluation_views": len(ev_u8),
                     "scales": len(SCALES), "quick": args.quick,
                     "units": "bits per latent element of the evaluation views"},
        "rows": rows,
        "seconds": time.perf_counter() - t_start,
    }
    path = args.out / f"split_entropy_headroom_{args.model}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{args.model} @ {cut}: {len(cal_u8)} calibration and {len(ev_u8)} evaluation views "
          f"({source}); bits per element\n" + table(rows) + f"\nwrote {path}")
    return result


if __name__ == "__main__":
    main()
