#!/usr/bin/env python
"""ViT and BLIP vision structure: cut at every block, feature sizes, FeatureCodec round trip.

Without weights (this machine has no model hub) the models are built from small configs with
random weights (transformers, offline): for every block index ``k`` the bench cuts with
``tc.split.partition``, checks that ``tail(head(x))`` equals ``model(x)`` bit for bit, records
the token map that crosses the cut (shape, float32 / float16 bytes), calibrates a
``tc.nn.FeatureCodec`` on it (channel axis = hidden size) and codes held-out inputs: bytes,
feature SNR, and that decoding gives back exactly the dequantized symbols. With random
weights the outputs mean nothing, so no accuracy is reported; it also prints the token-map
sizes of the real configurations (ViT-B/16 at 224 px, BLIP-base's vision tower at 384 px).

With real weights: ``--model google/vit-base-patch16-224`` (any ``ViTForImageClassification``
checkpoint ``from_pretrained`` can load, from the hub or a local folder) calibrates on
scikit-image photos and reports top-1 agreement with the uncompressed model on other photos.
When the weights cannot be loaded (no hub access, no local copy) the bench says so and runs
the random-weight structure check only.

Run:   python bench/features_vit.py [--out DIR] [--model NAME] [--bits 2.0]
Writes DIR/features_vit.json and DIR/features_vit.png.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine, machine_summary  # noqa: E402

import taskcodec as tc  # noqa: E402

REAL_CONFIGS = {
    # name: (image size, patch, hidden, layers)
    "ViT-B/16 @224": (224, 16, 768, 12),
    "BLIP-base vision @384": (384, 16, 768, 12),
}


def small_models() -> Dict[str, Any]:
    from transformers import BlipVisionConfig, BlipVisionModel, ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    vit = ViTForImageClassification(ViTConfig(
        hidden_size=96, num_hidden_layers=6, num_attention_heads=4, intermediate_size=192,
        image_size=64, patch_size=8, num_labels=10)).eval()
    blip = BlipVisionModel(BlipVisionConfig(
        hidden_size=96, num_hidden_layers=6, num_attention_heads=4, intermediate_size=192,
        image_size=64, patch_size=8)).eval()
    return {"ViTForImageClassification (random, 6 blocks, 96 wide, 64 px / 8)": vit,
            "BlipVisionModel (random, 6 blocks, 96 wide, 64 px / 8)": blip}


def main_tensor(out: Any) -> torch.Tensor:
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def structure(name: str, model: Any, bits: float) -> List[Dict[str, Any]]:
    size = model.config.image_size
    g = torch.Generator().manual_seed(1)
    x_cal, x_ev = torch.randn(32, 3, size, size, generator=g), torch.randn(4, 3, size, size, generator=g)
    rows = []
    with torch.inference_mode():
        full = main_tensor(model(x_ev))
        n_blocks = len(tc.split.cut_points(model)) - 1
        for k in range(n_blocks + 1):
            head, tail = tc.split.partition(model, k)
            f_ev = head(x_ev)
            exact = bool(torch.equal(main_tensor(tail(f_ev)), full))
            codec = tc.nn.FeatureCodec.calibrate(head(x_cal), channel_axis=-1, bits=bits, center="mean")
            blob = codec.compress(f_ev[:1])
            dec = codec.decompress(blob)
            ok = bool(torch.equal(dec, codec.dequantize(codec.quantize(f_ev[:1]))))
            err = float(((dec - f_ev[:1]) ** 2).mean())
            snr = 10 * np.log10(float((f_ev[:1] ** 2).mean()) / max(err, 1e-30))
            per = f_ev[0].numel()
            rows.append({"model": name, "block": k, "shape": list(f_ev.shape[1:]), "bytes_f32": per * 4,
                         "bytes_f16": per * 2, "head_tail_exact": exact, "frame_bytes": len(blob),
                         "ratio_vs_f16": per * 2 / len(blob), "codec_round_trip_exact": ok,
                         "feature_snr_db": snr})
    return rows


def real_weights(name: str, bits: float) -> Dict[str, Any]:
    """Top-1 agreement through FeatureCodec at a few cuts with real weights, if they load."""
    try:
        from transformers import ViTForImageClassification

        model = ViTForImageClassification.from_pretrained(name).eval()
    except Exception as e:  # no hub / no local copy / not a ViT classifier
        return {"model": name, "loaded": False,
                "reason": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
    from taskcodec.zoo import photos

    size = model.config.image_size

    def batch(names):
        from torchvision.transforms.v2 import functional as TF

        imgs = []
        for n in names:
            img = torch.from_numpy(photos.load_photo(n)).permute(2, 0, 1)
            for flip in (False, True):
                v = TF.resize(img.flip(-1) if flip else img, [size, size], antialias=True)
                imgs.append((v.float() / 255.0 - 0.5) / 0.5)
        return torch.stack(imgs)

    x_cal, x_ev = batch(photos.CALIBRATION_PHOTOS), batch(photos.EVALUATION_PHOTOS)
    out = {"model": name, "loaded": True, "cuts": []}
    with torch.inference_mode():
        ref = model(x_ev).logits.argmax(1)
        n = model.config.num_hidden_layers
        for k in sorted({n // 4, n // 2, 3 * n // 4}):
            head, tail = tc.split.partition(model, k)
            codec = tc.nn.FeatureCodec.calibrate(head(x_cal), channel_axis=-1, bits=bits, center="mean")
            f = head(x_ev)
            blobs = [codec.compress(f[i : i + 1]) for i in range(len(f))]
            pred = tail(torch.cat([codec.decompress(b) for b in blobs])).logits.argmax(1)
            out["cuts"].append({"block": k, "agreement": float((pred == ref).float().mean()),
                                "bytes_per_image": float(np.mean([len(b) for b in blobs])),
                                "bytes_f16": f[0].numel() * 2, "images": len(f)})
    return out


def main(argv: Any = None) -> Dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--model", default=None, help="a ViTForImageClassification name or folder for from_pretrained")
    ap.add_argument("--bits", type=float, default=2.0, help="FeatureCodec target bits per element")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows: List[Dict[str, Any]] = []
    for name, model in small_models().items():
        rows += structure(name, model, args.bits)
    real = [{"config": k, "tokens": (s // p) ** 2 + 1, "hidden": h, "blocks": L,
             "bytes_f32": ((s // p) ** 2 + 1) * h * 4, "bytes_f16": ((s // p) ** 2 + 1) * h * 2}
            for k, (s, p, h, L) in REAL_CONFIGS.items()]
    pretrained: Optional[Dict[str, Any]] = real_weights(args.model, args.bits) if args.model else None
    machine = describe_machine()
    result = {"benchmark": "features_vit", "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine, "bits_target": args.bits, "structure": rows, "real_config_sizes": real,
              "pretrained": pretrained, "total_seconds": time.perf_counter() - t0}
    (args.out / "features_vit.json").write_text(json.dumps(result, indent=2))
    plot(rows, args.out / "features_vit.png")
    print(f"machine: {machine_summary(machine)}")
    hdr = f"{'model':<66}{'block':>6}{'shape':>12}{'f16 B':>9}{'frame B':>9}{'vs f16':>8}{'SNR dB':>8}  exact cut / codec"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['model']:<66}{r['block']:>6}{'x'.join(map(str, r['shape'])):>12}{r['bytes_f16']:>9,}"
              f"{r['frame_bytes']:>9,}{r['ratio_vs_f16']:>7.1f}x{r['feature_snr_db']:>8.1f}  "
              f"{'yes' if r['head_tail_exact'] else 'NO'} / {'yes' if r['codec_round_trip_exact'] else 'NO'}")
    print("\ntoken map at any cut of the real configurations:")
    for r in real:
        print(f"  {r['config']:<24} {r['tokens']} tokens x {r['hidden']}: {r['bytes_f32']:,} B float32, "
              f"{r['bytes_f16']:,} B float16")
    if pretrained is None:
        print("\nno --model given: random weights only; accuracy needs real weights "
              "(e.g. --model google/vit-base-patch16-224 where the hub or a local copy is available)")
    elif not pretrained["loaded"]:
        print(f"\ncould not load {args.model!r} ({pretrained['reason']}); random-weight structure check only")
    else:
        for c in pretrained["cuts"]:
            print(f"  {args.model} block {c['block']}: top-1 agreement {100 * c['agreement']:.1f}% on "
                  f"{c['images']} images at {c['bytes_per_image']:,.0f} B/image (float16 {c['bytes_f16']:,} B)")
    print(f"wrote {args.out / 'features_vit.json'} and .png")
    return result


def plot(rows: List[Dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name in dict.fromkeys(r["model"] for r in rows):
        rs = [r for r in rows if r["model"] == name]
        ax.plot([r["block"] for r in rs], [r["bytes_f16"] for r in rs], "x--", color="grey")
        ax.plot([r["block"] for r in rs], [r["frame_bytes"] for r in rs], "o-", label=f"FeatureCodec: {name.split(' (')[0]}")
    ax.set_yscale("log")
    ax.set_xlabel("cut after block k (0 = after the embeddings)")
    ax.set_ylabel("bytes per image (x: float16)")
    ax.set_title("Transformer token maps per cut (random weights: sizes only)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
