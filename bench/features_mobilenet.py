#!/usr/bin/env python
"""MobileNetV2 (real ImageNet weights): FeatureCodec at several cuts and rates vs sending JPEG.

torchvision's MobileNetV2 with its ImageNet checkpoint (offline: ``taskcodec.nn.weights.ensure_weights``)
is cut at two or three places with ``tc.split.partition``. ``tc.nn.FeatureCodec`` is calibrated
per cut on one set of real photos (scikit-image's bundled pictures: random crops and flips of
the photos in ``taskcodec.zoo.photos.CALIBRATION_PHOTOS``) and evaluated on a disjoint set (random
crops and flips of other photos). Per cut and target rate: top-1 agreement with the
uncompressed model, mean KL divergence ``KL(p_full || p_codec)`` of the output distributions,
and the real bytes per image (one frame per image, calibration parameters shipped with the
model, not in the frame). Baselines: float16 features, and the edge-only option of sending
the 224x224 network input as a JPEG at several qualities (the full model runs on the decoded
JPEG; its answer is compared with the full model on the lossless input).

Run:   python bench/features_mobilenet.py [--out DIR] [--views 8] [--rates ...] [--cuts ...]
       python bench/features_mobilenet.py --quick
Writes DIR/features_mobilenet.json and DIR/features_mobilenet.png.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine, machine_summary  # noqa: E402
from split_codecs import code_each  # noqa: E402  (one frame per image, timed)

import taskcodec as tc  # noqa: E402
from taskcodec.zoo import photos  # noqa: E402
from taskcodec.nn.weights import ensure_weights  # noqa: E402

EVAL_PHOTOS = photos.EVALUATION_PHOTOS + ("brick", "grass", "gravel", "page", "text", "moon",
                                        "colorwheel", "cell")
CUTS = ("features.3", "features.6", "features.13")


def views(names: Sequence[str], n: int, seed: int) -> List[torch.Tensor]:
    """uint8 [3, 224, 224] network inputs: ``n`` random crops (50-100 % of the side,
    half of them mirrored) of each photo, resized with torchvision's preset (256 / 224)."""
    from torchvision.transforms.v2 import functional as TF

    rng = np.random.default_rng(seed)
    out = []
    for name in names:
        img = torch.from_numpy(photos.load_photo(name)).permute(2, 0, 1)
        h, w = img.shape[1:]
        for k in range(n):
            frac = 1.0 if k == 0 else rng.uniform(0.5, 1.0)
            ch, cw = int(h * frac), int(w * frac)
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            crop = img[:, y : y + ch, x : x + cw]
            if k % 2:
                crop = crop.flip(-1)
            crop = TF.center_crop(TF.resize(crop, [256], antialias=True), [224, 224])
            out.append(crop.contiguous())
    return out


def normalize(u8: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor([0.485, 0.456, 0.406]).view(-1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(-1, 3, 1, 1)
    return (u8.float() / 255.0 - mean) / std


def jpeg(u8: torch.Tensor, quality: int) -> tuple:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(u8.permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=quality)
    size = buf.tell()
    buf.seek(0)
    dec = torch.from_numpy(np.array(Image.open(buf).convert("RGB"))).permute(2, 0, 1)
    return size, dec


CONFIDENT = 0.5  # "confident" images: the full model's top-1 probability is at least this


def compare(p_full: torch.Tensor, logits: torch.Tensor) -> Dict[str, float]:
    logp = F.log_softmax(logits, 1)
    kl = (p_full * (torch.log(p_full.clamp_min(1e-30)) - logp)).sum(1)
    same = logits.argmax(1) == p_full.argmax(1)
    conf = p_full.max(1).values >= CONFIDENT
    return {"agreement": float(same.float().mean()),
            "agreement_confident": float(same[conf].float().mean()) if conf.any() else float("nan"),
            "confident_images": int(conf.sum()),
            "kl_mean": float(kl.mean()), "kl_max": float(kl.max())}


def main(argv: Any = None) -> Dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--views", type=int, default=8, help="crops/flips per photo")
    ap.add_argument("--cuts", nargs="*", default=list(CUTS))
    ap.add_argument("--rates", type=float, nargs="*", default=[0.5, 1.0, 1.5, 2.0, 3.0, 4.0])
    ap.add_argument("--jpeg", type=int, nargs="*", default=[10, 25, 50, 75, 90])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    if args.quick:
        args.views, args.cuts, args.rates, args.jpeg = 2, args.cuts[1:2], args.rates[-1:], args.jpeg[-1:]

    ensure_weights()
    from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

    model = mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1).eval()
    cal_u8 = torch.stack(views(photos.CALIBRATION_PHOTOS, args.views, seed=0))
    ev_u8 = torch.stack(views(EVAL_PHOTOS[:4] if args.quick else EVAL_PHOTOS, args.views, seed=1))
    x_cal, x_ev = normalize(cal_u8), normalize(ev_u8)
    with torch.inference_mode():
        p_full = torch.softmax(model(x_ev), 1)
    rows: List[Dict[str, Any]] = []

    for at in args.cuts:
        head, tail = tc.split.partition(model, at)
        with torch.inference_mode():
            f_cal, f_ev = head(x_cal), head(x_ev)
            per = f_ev[0].numel()
            f16 = per * 2
            r = compare(p_full, tail(f_ev.half().float()))
            rows.append({"cut": at, "method": "float16", "setting": "-", "bytes_per_image": f16,
                         "ratio_vs_f16": 1.0, "shape": list(f_ev.shape[1:]), **r})
            for bits in args.rates:
                codec = tc.nn.FeatureCodec.calibrate(f_cal, bits=bits, params_in_frame=False)
                nbytes, t_enc, t_dec, dec = code_each(codec, f_ev)
                r = compare(p_full, tail(dec))
                rows.append({"cut": at, "method": "FeatureCodec", "setting": f"{bits:g} bit target",
                             "bytes_per_image": nbytes, "ratio_vs_f16": f16 / nbytes,
                             "shape": list(f_ev.shape[1:]), "step_per_std": codec.step_per_std,
                             "calibration_bits": codec.info["calibration_bits_per_element"],
                             "encode_ms": 1e3 * t_enc, "decode_ms": 1e3 * t_dec,
                             "table_bytes": len(codec.table.to_bytes()), **r})
    for q in args.jpeg:
        sizes, decs = zip(*(jpeg(u, q) for u in ev_u8))
        with torch.inference_mode():
            r = compare(p_full, model(normalize(torch.stack(decs))))
        rows.append({"cut": "edge-only", "method": "JPEG", "setting": f"quality {q}",
                     "bytes_per_image": float(np.mean(sizes)), "ratio_vs_f16": None, **r})

    machine = describe_machine()
    result = {
        "benchmark": "features_mobilenet",
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "settings": {"calibration_photos": list(photos.CALIBRATION_PHOTOS),
                     "evaluation_photos": list(EVAL_PHOTOS[:4] if args.quick else EVAL_PHOTOS),
                     "views_per_photo": args.views, "calibration_images": len(cal_u8),
                     "evaluation_images": len(ev_u8), "torch_threads": torch.get_num_threads()},
        "target": ">= 99 % top-1 agreement (all evaluation images) at >= 10x fewer bytes than float16 features",
        "confident_threshold": CONFIDENT,
        "rows": rows,
        "total_seconds": time.perf_counter() - t_start,
    }
    for r in rows:
        r["meets_target"] = bool(r["method"] == "FeatureCodec" and r["agreement"] >= 0.99
                                 and r["ratio_vs_f16"] >= 10)
    (args.out / "features_mobilenet.json").write_text(json.dumps(result, indent=2))
    plot(rows, args.out / "features_mobilenet.png")
    print(f"machine: {machine_summary(machine)}")
    print(f"MobileNetV2 ImageNet: calibrated on {len(cal_u8)} views of {len(photos.CALIBRATION_PHOTOS)} photos, "
          f"evaluated on {len(ev_u8)} views of {len(result['settings']['evaluation_photos'])} other photos "
          f"(one frame per image)")
    n_conf = rows[0]["confident_images"] if rows else 0
    print(f"'confident': the {n_conf} evaluation images where the full model's top-1 probability is "
          f">= {CONFIDENT} (many views are textures or crops the model is unsure about)")
    hdr = (f"{'cut':<12}{'method':<14}{'setting':<16}{'B/image':>10}{'vs f16':>8}{'top-1 agree':>12}"
           f"{'confident':>10}{'KL mean':>9}  target (all images)")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        ratio = "-" if r["ratio_vs_f16"] is None else f"{r['ratio_vs_f16']:.1f}x"
        print(f"{r['cut']:<12}{r['method']:<14}{r['setting']:<16}{r['bytes_per_image']:>10,.0f}{ratio:>8}"
              f"{100 * r['agreement']:>11.1f}%{100 * r['agreement_confident']:>9.1f}%{r['kl_mean']:>9.4f}  "
              f"{'met' if r['meets_target'] else ''}")
    print(f"wrote {args.out / 'features_mobilenet.json'} and .png ({result['total_seconds']:.0f} s)")
    return result


def plot(rows: List[Dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for cut in dict.fromkeys(r["cut"] for r in rows):
        pts = sorted((r["bytes_per_image"], 100 * r["agreement"]) for r in rows
                     if r["cut"] == cut and r["method"] in ("FeatureCodec", "JPEG"))
        style = "k^--" if cut == "edge-only" else "o-"
        ax.plot(*zip(*pts), style, label="JPEG of the input (edge-only)" if cut == "edge-only"
                else f"FeatureCodec after {cut}")
        f16 = [r for r in rows if r["cut"] == cut and r["method"] == "float16"]
        if f16:
            ax.plot(f16[0]["bytes_per_image"], 100 * f16[0]["agreement"], "x", color="grey")
    for cut in dict.fromkeys(r["cut"] for r in rows if r["method"] == "FeatureCodec"):
        pts = sorted((r["bytes_per_image"], 100 * r["agreement_confident"]) for r in rows
                     if r["cut"] == cut and r["method"] == "FeatureCodec")
        ax.plot(*zip(*pts), ".:", alpha=0.6, label=f"  same, confident images only ({cut})")
    ax.axhline(99, color="grey", ls=":", label="99 % agreement")
    ax.set_xscale("log")
    ax.set_xlabel("bytes per image (x: float16 features)")
    ax.set_ylabel("top-1 agreement with the full model (%)")
    ax.set_title("MobileNetV2 (ImageNet weights), real photos: agreement vs bytes")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
