#!/usr/bin/env python
"""Train a shipped split codec: distil a learned bottleneck for a pretrained model on the
offline photo pool's training photos (``taskcodec photos fetch``), with no labels.

    python scripts/train_split_codec.py --model mobilenet_v2 --out src/taskcodec/nn/pretrained/mobilenet_v2.npz
    python scripts/train_split_codec.py --model efficientnet_lite0 --out src/taskcodec/nn/pretrained/efficientnet_lite0.npz

The defaults are the shipped codecs' settings (they are recorded in the JSON beside each); the
low-rate MobileNetV2 codec of docs/features.md is ``--bits 0.75 --lam 0.5 --steps 1000``.

Views: random resized crops (area 8-100 %, aspect 3/4-4/3) of the ``train`` photos, mirrored
half of the time, colour-jittered, a quarter of them mixed with another photo's view (mixup or
cutmix). The head's activations and the uncompressed model's logits of all views are computed
once and cached (float16) under ``<data dir>/split_codec_cache``; training then only runs the
bottleneck and the tail (see :meth:`taskcodec.nn.SplitCodec.fit`). Every tenth training photo is
held out: the codec is scored there against its post-training start (the validation photos of
the pool are never touched here; ``bench/split_codecs.py`` evaluates on them). ``--photos val``
is the one exception, a diagnostic: it trains on the validation photos themselves, to measure
how far the codec gets when the evaluation photos are no longer unseen (an upper bound for more
photos of the same kind; such a codec is never shipped).

Writes the codec (``--out``) and ``<out>.json``: the settings, seed, the photo manifest's
SHA-256, the machine, the training time and the held-out score. Deterministic for a seed on
one machine (the CPU kernels of torch are); ``--resume`` continues from the checkpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any, Iterator, List

import numpy as np
import torch
from tqdm.auto import tqdm

import taskcodec as tc
from taskcodec._cache import data_cache_dir
from taskcodec.nn import distill
from taskcodec.nn.backbones import LITE0_CUT
from taskcodec.zoo import models, pool
from taskcodec.zoo.photos import random_view

CUTS = {"mobilenet_v2": "features.13", "efficientnet_lite0": LITE0_CUT}
MAX_SIDE = 768  # photos are reduced to this short side once (speed; crops stay sharp)


def load_photos(paths: List[Path]) -> List[torch.Tensor]:
    from torchvision.transforms.v2 import functional as TF

    out = []
    for p in tqdm(paths, desc="photos", leave=False):
        t = torch.from_numpy(np.array(pool.load(p), dtype=np.uint8)).permute(2, 0, 1)
        if min(t.shape[1:]) > MAX_SIDE:
            t = TF.resize(t, [MAX_SIDE], antialias=True)
        out.append(t.contiguous())
    return out


def jitter(u8: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as TF

    if rng.random() < 0.8:
        u8 = TF.adjust_brightness(u8, float(rng.uniform(0.7, 1.3)))
        u8 = TF.adjust_contrast(u8, float(rng.uniform(0.7, 1.3)))
        u8 = TF.adjust_saturation(u8, float(rng.uniform(0.6, 1.4)))
        u8 = TF.adjust_hue(u8, float(rng.uniform(-0.04, 0.04)))
    if rng.random() < 0.05:
        u8 = TF.rgb_to_grayscale(u8, 3)
    return u8


def view(photos: List[torch.Tensor], rng: np.random.Generator) -> torch.Tensor:
    """One augmented ``uint8 [3, 224, 224]`` training view."""
    v = jitter(random_view(photos[int(rng.integers(len(photos)))], rng), rng)
    r = rng.random()
    if r < 0.25:  # mix with another photo's view
        other = jitter(random_view(photos[int(rng.integers(len(photos)))], rng), rng)
        if r < 0.125:  # mixup
            lam = float(rng.beta(1.0, 1.0))
            v = (lam * v.float() + (1 - lam) * other.float()).round().to(torch.uint8)
        else:  # cutmix: a rectangle of the other view
            side = int(224 * np.sqrt(rng.uniform(0.1, 0.5)))
            y, x = (int(rng.integers(0, 224 - side + 1)) for _ in range(2))
            v = v.clone()
            v[:, y:y + side, x:x + side] = other[:, y:y + side, x:x + side]
    return v


def view_batches(photos: List[torch.Tensor], n: int, prep: Any, seed: int,
                 batch: int = 64) -> Iterator[torch.Tensor]:
    rng = np.random.default_rng(seed)
    bar = tqdm(total=n, desc="head activations", leave=False)
    for i in range(0, n, batch):
        k = min(batch, n - i)
        yield models.normalize(torch.stack([view(photos, rng) for _ in range(k)]), prep)
        bar.update(k)
    bar.close()


def cached_views(name: str, head: Any, tail: Any, photos: List[torch.Tensor], n: int, prep: Any,
                 seed: int, tag: str) -> Any:
    """``(activations, logits)`` (float16) of ``n`` views, from the cache file when present."""
    path = data_cache_dir() / "split_codec_cache" / f"{name}-{tag}-{n}-seed{seed}.pt"
    if path.is_file():
        d = torch.load(path, weights_only=True)
        return d["acts"], d["logits"]
    acts, logits = [], []
    with torch.inference_mode():
        for x in view_batches(photos, n, prep, seed):
            a = head(x)
            acts.append(a.half())
            logits.append(tail(a).half())
    out = torch.cat(acts), torch.cat(logits)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"acts": out[0], "logits": out[1]}, path)
    return out


def main(argv: Any = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="mobilenet_v2", choices=sorted(models.MODELS))
    ap.add_argument("--at", default=None, help="the cut (default: the model's, CUTS)")
    ap.add_argument("--views", type=int, default=10000)
    ap.add_argument("--holdout-views", type=int, default=1000)
    ap.add_argument("--bits", type=float, default=1.5, help="the post-training start's rate")
    ap.add_argument("--lam", type=float, default=0.15)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--warmup", type=int, default=0, help="steps of feature MSE before the KL")
    ap.add_argument("--density-warmup", type=int, default=300, help="steps that train only the rate model")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--hidden", type=int, default=None)
    ap.add_argument("--init", choices=("channel", "task"), default="task",
                    help="the post-training start: per-channel steps or the task transform")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--resume", action="store_true", help="continue from the checkpoint next to --out")
    ap.add_argument("--photos", choices=("train", "val"), default="train",
                    help="val: a diagnostic upper bound, never to ship: train on the benchmark's "
                         "own validation photos (all of them; the held-out views are new crops "
                         "of the same photos)")
    args = ap.parse_args(argv)
    args.at = args.at or CUTS[args.model]
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.time()

    model, prep = models.load_model(args.model)
    head, tail = tc.split.partition(model, args.at)
    paths = pool.photos(args.photos)
    held = paths[::10]
    train = paths if args.photos == "val" else [p for i, p in enumerate(paths) if i % 10]
    imgs_train, imgs_held = load_photos(train), load_photos(held)
    tag = f"{args.at}" if args.photos == "train" else f"{args.at}-val"
    acts, logits = cached_views(args.model, head, tail, imgs_train, args.views, prep, args.seed, tag)
    held_acts, held_logits = cached_views(args.model, head, tail, imgs_held, args.holdout_views, prep,
                                          args.seed + 1, tag + "-holdout")
    t_cache = time.time() - t0
    print(f"cached {len(acts)} training and {len(held_acts)} held-out views in {t_cache:.0f} s", flush=True)

    ckpt = args.out.with_suffix(".ckpt")
    if ckpt.exists() and not args.resume:
        ckpt.unlink()
    sc = tc.nn.SplitCodec.fit(head, tail, None, cached=(acts, logits), at=args.at, lam=args.lam,
                              steps=args.steps, warmup=args.warmup, batch_size=args.batch_size,
                              density_warmup=args.density_warmup, lr=args.lr, hidden=args.hidden,
                              bits=args.bits, seed=args.seed, init=args.init,
                              checkpoint=ckpt, checkpoint_every=250,
                              val_cached=(held_acts, held_logits))
    t_train = time.time() - t0 - t_cache
    # the held-out training-source views through the coder, one frame each
    blobs = [sc.encode_features(held_acts[i:i + 1].float()) for i in range(len(held_acts))]
    with torch.inference_mode():
        out = torch.cat([tail(sc.decode_features(b)) for b in blobs])
    score = {"learned": {**distill.agreement(held_logits.float(), out),
                         "bytes_per_view": float(np.mean([len(b) for b in blobs]))}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    trained_on = ("taskcodec photo pool, train split (every tenth photo held out)"
                  if args.photos == "train" else
                  "taskcodec photo pool, VALIDATION split (diagnostic upper bound; not for shipping)")
    sc.info.update({"model": args.model, "trained_on": trained_on, "seed": args.seed})
    sc.save(args.out)
    if ckpt.exists():
        ckpt.unlink()
    record = {
        "model": args.model, "at": args.at,
        "settings": {k: (v.name if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "photo_manifest_sha256": hashlib.sha256(pool.MANIFEST.read_bytes()).hexdigest(),
        "training_photos": len(train), "held_out_photos": len(held),
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                    "cuda": torch.cuda.is_available(), "python": sys.version.split()[0],
                    "torch": torch.__version__},
        "seconds": {"cache": round(t_cache), "train": round(t_train), "total": round(time.time() - t0)},
        "info": sc.info, "held_out": score, "fingerprint": f"{sc.fingerprint:016x}",
        "last_steps": sc.history[-5:],
    }
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    print(json.dumps({"held_out": score, "info": sc.info, "seconds": record["seconds"]}, indent=1))


if __name__ == "__main__":
    main()
