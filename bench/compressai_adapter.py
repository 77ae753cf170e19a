#!/usr/bin/env python
"""CompressAI's coder vs taskcodec's, inside a CompressAI model (``tc.nn.use_taskcodec``).

A ``compressai.models.ScaleHyperprior`` (the bmshj2018 hyperprior, N=128, M=192: the
configuration of its higher qualities) with random weights (speed does not depend on training;
``net.update()`` builds the tables from the untrained densities) codes a real photo
(scikit-image's astronaut, 3x512x512, and rocket, 3x427x640 cropped to multiples of 64).
``z`` (EntropyBottleneck) is the model's; ``y`` (GaussianConditional, 192 channels) has the
model's shape but Gaussian values with known scales (log-uniform 0.5 .. 8: an untrained
model's own ``y`` is almost all zeros and codes to a few bytes). The timings are the entropy models' own ``compress`` / ``decompress`` (quantize,
index, code, dequantize) with CompressAI's default coder and then after
``tc.nn.use_taskcodec(net)``, median of ``--repeats`` runs, plus the whole
``net.compress`` / ``net.decompress``. The decoded ``x_hat`` must be identical both ways.

Run:   python bench/compressai_adapter.py [--out DIR] [--repeats 5]
Writes DIR/compressai_adapter.json and DIR/compressai_adapter.png.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine, machine_summary  # noqa: E402

import taskcodec as tc  # noqa: E402


def median_s(fn: Callable[[], Any], repeats: int):
    out = fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), out


def photo(name: str) -> torch.Tensor:
    from taskcodec.zoo.photos import load_photo

    img = torch.from_numpy(load_photo(name)).permute(2, 0, 1).float() / 255.0
    h, w = (img.shape[1] // 64) * 64, (img.shape[2] // 64) * 64
    return img[:, :h, :w].unsqueeze(0).contiguous()


def run_case(name: str, repeats: int) -> Dict[str, Any]:
    from compressai.models import ScaleHyperprior

    torch.manual_seed(0)
    net = ScaleHyperprior(N=128, M=192).eval()
    net.update(force=True)
    x = photo(name)
    with torch.no_grad():
        y = net.g_a(x)
        z = net.h_a(torch.abs(y))
        z_hat = net.entropy_bottleneck.quantize(z, "dequantize", net.entropy_bottleneck._get_medians().view(1, -1, 1, 1))
        # An untrained hyperprior predicts tiny scales and its y is nearly all zeros (a few
        # bytes): code a y of the same shape with Gaussian latents of known, realistic scales
        # (log-uniform 0.5 .. 8, about 2-5 bits/symbol) so the coders do real work.
        g = torch.Generator().manual_seed(0)
        scales = torch.exp(torch.empty(y.shape).uniform_(np.log(0.5), np.log(8.0), generator=g))
        y = torch.randn(y.shape, generator=g) * scales
        indexes = net.gaussian_conditional.build_indexes(scales)
        del z_hat
        gc, eb = net.gaussian_conditional, net.entropy_bottleneck
        res: Dict[str, Any] = {"image": name, "shape": list(x.shape), "y_symbols": y.numel(), "z_symbols": z.numel()}
        outs = {}
        for coder in ("compressai", "taskcodec"):
            if coder == "taskcodec":
                tc.nn.use_taskcodec(net)
            t_ye, sy = median_s(lambda: gc.compress(y, indexes), repeats)
            t_yd, y_dec = median_s(lambda: gc.decompress(sy, indexes), repeats)
            t_ze, sz = median_s(lambda: eb.compress(z), repeats)
            t_zd, _ = median_s(lambda: eb.decompress(sz, z.shape[-2:]), repeats)
            t_ne, strings = median_s(lambda: net.compress(x), max(1, repeats // 2))
            t_nd, dec = median_s(lambda: net.decompress(strings["strings"], strings["shape"]), max(1, repeats // 2))
            outs[coder] = (y_dec, dec["x_hat"])
            res[coder] = {
                "y_encode_ms": 1e3 * t_ye, "y_decode_ms": 1e3 * t_yd,
                "z_encode_ms": 1e3 * t_ze, "z_decode_ms": 1e3 * t_zd,
                "y_msym_s_encode": y.numel() / t_ye / 1e6, "y_msym_s_decode": y.numel() / t_yd / 1e6,
                "y_bytes": len(sy[0]), "z_bytes": len(sz[0]),
                "net_compress_ms": 1e3 * t_ne, "net_decompress_ms": 1e3 * t_nd,
            }
        res["identical_y_hat"] = bool(torch.equal(outs["compressai"][0], outs["taskcodec"][0]))
        res["identical_x_hat"] = bool(torch.equal(outs["compressai"][1], outs["taskcodec"][1]))
    return res


def main(argv: Any = None) -> Dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--images", nargs="*", default=["astronaut", "rocket"])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
    args.out.mkdir(parents=True, exist_ok=True)
    cases = [run_case(name, args.repeats) for name in args.images]
    machine = describe_machine()
    result = {"benchmark": "compressai_adapter",
              "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine, "model": "compressai.models.ScaleHyperprior(N=128, M=192), random weights",
              "torch_threads": torch.get_num_threads(), "repeats": args.repeats, "cases": cases}
    (args.out / "compressai_adapter.json").write_text(json.dumps(result, indent=2))
    plot(cases, args.out / "compressai_adapter.png")
    print(f"machine: {machine_summary(machine)}")
    hdr = (f"{'image':<10}{'coder':<11}{'y enc ms':>9}{'y dec ms':>9}{'Msym/s enc':>11}{'Msym/s dec':>11}"
           f"{'y bytes':>9}{'z bytes':>8}{'net.compress ms':>16}{'net.decompress ms':>18}")
    print(hdr)
    print("-" * len(hdr))
    for c in cases:
        for coder in ("compressai", "taskcodec"):
            r = c[coder]
            print(f"{c['image']:<10}{coder:<11}{r['y_encode_ms']:>9.2f}{r['y_decode_ms']:>9.2f}"
                  f"{r['y_msym_s_encode']:>11.1f}{r['y_msym_s_decode']:>11.1f}{r['y_bytes']:>9,}{r['z_bytes']:>8,}"
                  f"{r['net_compress_ms']:>16.1f}{r['net_decompress_ms']:>18.1f}")
        a, b = c["compressai"], c["taskcodec"]
        print(f"{'':<10}speed-up on y: encode {a['y_encode_ms'] / b['y_encode_ms']:.1f}x, decode "
              f"{a['y_decode_ms'] / b['y_decode_ms']:.1f}x; identical y_hat: {c['identical_y_hat']}, "
              f"identical x_hat: {c['identical_x_hat']}")
    print(f"wrote {args.out / 'compressai_adapter.json'} and .png")
    return result


def plot(cases: List[Dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    labels, width = [], 0.2
    keys = ["y_encode_ms", "y_decode_ms", "net_compress_ms", "net_decompress_ms"]
    xs = np.arange(len(keys))
    for i, c in enumerate(cases):
        for j, coder in enumerate(("compressai", "taskcodec")):
            ax.bar(xs + (2 * i + j - 1.5) * width, [c[coder][k] for k in keys], width,
                   label=f"{c['image']}: {coder}")
    ax.set_xticks(xs, ["y entropy encode", "y entropy decode", "net.compress", "net.decompress"])
    ax.set_ylabel("ms (median)")
    ax.set_yscale("log")
    ax.set_title("ScaleHyperprior (random weights): CompressAI coder vs tc.nn.use_taskcodec")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    del labels


if __name__ == "__main__":
    main()
