#!/usr/bin/env python
"""Fashion-MNIST: test accuracy vs bytes per sample for split-model feature codecs.

A small CNN (three conv blocks) is trained on the 60 k training images (or loaded from
``OUT/fmnist_cnn.pt``) and cut after ``block2``: the device sends the ``64x7x7`` activation
(3,136 values; 6,272 B in float16). On the full 10 k test set, for every way of sending it:

* float32, float16: the activation as is;
* int8: per-sample symmetric quantization (max |x| / 127, the scale in 4 extra bytes);
  int8 + zlib: the same bytes deflated (level 9);
* ``tc.nn.FeatureCodec`` at several target rates (calibrated on 2,000 training images,
  post-training, no retraining);
* ``tc.nn.TaskBottleneck`` at several λ (trained on the training set's activations with the
  tail fine-tuned, head frozen).

Bytes are real: every test sample is its own frame (a device sending one image at a time;
header, CRC32C and all), except the "batched" column, where the 10 k samples go in frames
of 256. Accuracy is through the decoded features and the tail.

Run:   python bench/features_fmnist.py [--out DIR] [--epochs 3] [--lams ...] [--rates ...]
       python bench/features_fmnist.py --quick     # tiny smoke run (a few thousand images)
Writes DIR/features_fmnist.json and DIR/features_fmnist.png.
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import sys
import time
import zlib
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine, machine_summary  # noqa: E402

import taskcodec as tc  # noqa: E402

CUT = "block2"


def fashion_cnn() -> nn.Sequential:
    """The small CNN the experiment splits (about 54 k parameters)."""

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout),
                             nn.ReLU(inplace=False), nn.MaxPool2d(2))

    return nn.Sequential(
        dict_to_ordered({
            "block1": block(1, 16),
            "block2": block(16, 64),
            "block3": block(64, 64),
            "flatten": nn.Flatten(),
            "dropout": nn.Dropout(0.2),
            "fc": nn.Linear(64 * 3 * 3, 10),
        })
    )


def dict_to_ordered(d: Dict[str, nn.Module]) -> Any:
    from collections import OrderedDict

    return OrderedDict(d)


def to_input(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.array(images)).float().div_(255.0).unsqueeze(1)
    return (x - 0.2860) / 0.3530  # Fashion-MNIST train mean / std


def batches(x: torch.Tensor, y: torch.Tensor, size: int, shuffle: bool, seed: int = 0):
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed)) if shuffle else torch.arange(len(x))
    for i in range(0, len(x), size):
        j = idx[i : i + size]
        yield x[j], y[j]


def train_cnn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, progress: bool) -> List[float]:
    from tqdm.auto import tqdm

    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    steps = epochs * ((len(x) + 127) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    losses = []
    for epoch in range(epochs):
        model.train()
        total, n = 0.0, 0
        for xb, yb in tqdm(batches(x, y, 128, True, epoch), total=(len(x) + 127) // 128,
                           desc=f"CNN epoch {epoch + 1}/{epochs}", disable=not progress, leave=False):
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(xb)
            n += len(xb)
        losses.append(total / n)
    model.eval()
    return losses


@torch.no_grad()
def accuracy(tail: nn.Module, feats: torch.Tensor, y: torch.Tensor) -> float:
    correct = 0
    for i in range(0, len(feats), 1000):
        correct += int((tail(feats[i : i + 1000]).argmax(1) == y[i : i + 1000]).sum())
    return correct / len(feats)


def main(argv: Any = None) -> Dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--data", type=Path, default=None, help="Fashion-MNIST folder (IDX files)")
    ap.add_argument("--epochs", type=int, default=3, help="CNN training epochs")
    ap.add_argument("--bn-epochs", type=int, default=8, help="TaskBottleneck epochs per λ")
    ap.add_argument("--bn-channels", type=int, default=8)
    ap.add_argument("--lams", type=float, nargs="*", default=[0.0001, 0.0003, 0.001])
    ap.add_argument("--rates", type=float, nargs="*", default=[0.15, 0.25, 0.4, 0.6, 1.0, 1.5])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    progress = not args.no_progress
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    xtr_np, ytr_np = tc.nn.load_fashion_mnist("train", args.data)
    xte_np, yte_np = tc.nn.load_fashion_mnist("test", args.data)
    if args.quick:
        xtr_np, ytr_np, xte_np, yte_np = xtr_np[:1000], ytr_np[:1000], xte_np[:200], yte_np[:200]
        args.epochs, args.bn_epochs = 1, 1
        args.lams, args.rates = args.lams[-1:], args.rates[-1:]
    xtr, ytr = to_input(xtr_np), torch.from_numpy(ytr_np)
    xte, yte = to_input(xte_np), torch.from_numpy(yte_np)

    # ---- the CNN (cached: the same weights every run)
    model = fashion_cnn()
    cache = args.out / ("fmnist_cnn_quick.pt" if args.quick else "fmnist_cnn.pt")
    if cache.is_file():
        model.load_state_dict(torch.load(cache, map_location="cpu", weights_only=True))
        train_losses = None
        print(f"loaded the trained CNN from {cache}")
    else:
        t0 = time.perf_counter()
        train_losses = train_cnn(model, xtr, ytr, args.epochs, progress)
        torch.save(model.state_dict(), cache)
        print(f"trained the CNN in {time.perf_counter() - t0:.0f} s -> {cache}")
    model.eval()
    head, tail = tc.split.partition(model, CUT)
    with torch.inference_mode():
        f_te = torch.cat([head(xte[i : i + 1000]) for i in range(0, len(xte), 1000)])
        f_tr = torch.cat([head(xtr[i : i + 1000]) for i in range(0, len(xtr), 1000)])
    per = f_te[0].numel()
    f16_bytes = per * 2
    rows: List[Dict[str, Any]] = []

    def add(method: str, setting: str, acc: float, nbytes: float, batched: Any = None, **extra: Any) -> None:
        rows.append({"method": method, "setting": setting, "accuracy": acc, "bytes_per_sample": nbytes,
                     "bytes_per_sample_batched": batched, "ratio_vs_f16": f16_bytes / nbytes, **extra})

    # ---- baselines
    acc32 = accuracy(tail, f_te, yte)
    add("float32", "-", acc32, per * 4, per * 4)
    add("float16", "-", accuracy(tail, f_te.half().float(), yte), f16_bytes, f16_bytes)
    scale = f_te.flatten(1).abs().amax(1).clamp_min(1e-12) / 127
    q8 = torch.round(f_te / scale.view(-1, 1, 1, 1)).clamp(-127, 127).to(torch.int8)
    acc8 = accuracy(tail, q8.float() * scale.view(-1, 1, 1, 1), yte)
    add("int8", "per-sample scale", acc8, per + 4, per + 4)
    z = [len(zlib.compress(q8[i].numpy().tobytes(), 9)) + 4 for i in range(len(q8))]
    add("int8+zlib", "level 9", acc8, float(np.mean(z)), None)

    # ---- FeatureCodec (post-training) at several rates, calibrated on training images
    calib = f_tr[torch.randperm(len(f_tr), generator=torch.Generator().manual_seed(1))[:2000]]
    if args.quick:
        args.bn_channels = min(args.bn_channels, 4)
    for bits in args.rates:
        codec = tc.nn.FeatureCodec.calibrate(calib, bits=bits, params_in_frame=False)
        blobs = [codec.compress(f_te[i : i + 1]) for i in range(len(f_te))]
        dec = torch.cat([codec.decompress(b) for b in blobs])
        batched = sum(len(codec.compress(f_te[i : i + 256])) for i in range(0, len(f_te), 256)) / len(f_te)
        add("FeatureCodec", f"{bits:g} bit target", accuracy(tail, dec, yte),
            float(np.mean([len(b) for b in blobs])), batched, step_per_std=codec.step_per_std,
            calibration_bits=codec.info["calibration_bits_per_element"])

    # ---- TaskBottleneck (learned) at several λ
    def train_batches():
        return batches(f_tr, ytr, 128, True, int(time.perf_counter() * 1e6) % 2**31)

    for lam in args.lams:
        torch.manual_seed(0)
        bn = tc.nn.TaskBottleneck(f_tr.shape[1], args.bn_channels, hidden=32, quantizer="ste")
        tail_l = copy.deepcopy(tail)
        ckpt = args.out / ("fmnist_bn_quick" if args.quick else "fmnist_bn") / f"lam{lam:g}_c{args.bn_channels}.pt"
        t0 = time.perf_counter()
        hist = tc.nn.train_bottleneck(bn, tail_l, train_batches, lam=lam, epochs=args.bn_epochs,
                                      checkpoint=ckpt, progress=progress)
        train_s = time.perf_counter() - t0
        single = tc.nn.evaluate_bottleneck(bn, tail_l, batches(f_te, yte, 500, False))
        batched = tc.nn.evaluate_bottleneck(bn, tail_l, batches(f_te, yte, 256, False),
                                            per_sample_frames=False)
        assert batched["accuracy"] == single["accuracy"]
        add("TaskBottleneck", f"λ={lam:g}", single["accuracy"], single["bytes_per_sample"],
            batched["bytes_per_sample"], estimated_bits=single["estimated_bits_per_sample"],
            train_seconds=train_s, history=hist, channels=args.bn_channels)

    # ---- report
    target_bytes = f16_bytes / 20
    for r in rows:
        r["accuracy_loss_points"] = 100 * (acc32 - r["accuracy"])
        r["meets_target"] = bool(r["accuracy_loss_points"] <= 1.0 and r["bytes_per_sample"] <= target_bytes)
    machine = describe_machine()
    result = {
        "benchmark": "features_fmnist",
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "settings": {"cut": CUT, "feature_shape": list(f_te.shape[1:]), "test_samples": len(f_te),
                     "train_samples": len(f_tr), "cnn_epochs": args.epochs, "cnn_train_losses": train_losses,
                     "bn_epochs": args.bn_epochs, "bn_channels": args.bn_channels, "quick": args.quick,
                     "torch_threads": torch.get_num_threads()},
        "target": "<= 1 point accuracy loss at >= 20x fewer bytes than float16 (<= %.1f B/sample)" % target_bytes,
        "rows": rows,
        "total_seconds": time.perf_counter() - t_start,
    }
    (args.out / "features_fmnist.json").write_text(json.dumps(result, indent=2, default=float))
    plot(rows, acc32, f16_bytes, args.out / "features_fmnist.png")
    print(f"machine: {machine_summary(machine)}")
    print(f"Fashion-MNIST, cut after {CUT}: {tuple(f_te.shape[1:])} features, {len(f_te)} test images; "
          f"bytes = one frame per image (batched: frames of 256)")
    hdr = f"{'method':<15}{'setting':<20}{'accuracy':>9}{'Δ pts':>7}{'B/sample':>10}{'batched':>9}{'vs f16':>8}  target"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        b = r["bytes_per_sample_batched"]
        print(f"{r['method']:<15}{r['setting']:<20}{100 * r['accuracy']:>8.2f}%{-r['accuracy_loss_points']:>7.2f}"
              f"{r['bytes_per_sample']:>10.1f}{'-' if b is None else f'{b:.1f}':>9}{r['ratio_vs_f16']:>7.1f}x  "
              f"{'met' if r['meets_target'] else ''}")
    print(f"wrote {args.out / 'features_fmnist.json'} and .png ({result['total_seconds']:.0f} s)")
    return result


def plot(rows: List[Dict[str, Any]], acc32: float, f16_bytes: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, marker in (("FeatureCodec", "o-"), ("TaskBottleneck", "s-")):
        pts = sorted((r["bytes_per_sample"], 100 * r["accuracy"]) for r in rows if r["method"] == method)
        if pts:
            ax.plot(*zip(*pts), marker, label=f"taskcodec {method}")
    for r in rows:
        if r["method"] in ("float32", "float16", "int8", "int8+zlib"):
            ax.plot(r["bytes_per_sample"], 100 * r["accuracy"], "k^")
            ax.annotate(r["method"], (r["bytes_per_sample"], 100 * r["accuracy"]), fontsize=8,
                        xytext=(3, -10), textcoords="offset points")
    ax.axhline(100 * acc32 - 1, color="grey", ls=":", label="float32 accuracy − 1 point")
    ax.axvline(f16_bytes / 20, color="red", ls=":", label="20× fewer bytes than float16")
    ax.set_xscale("log")
    ax.set_xlabel("bytes per test image (one frame each)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Fashion-MNIST split CNN: accuracy vs feature bytes")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
