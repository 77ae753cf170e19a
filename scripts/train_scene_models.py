#!/usr/bin/env python
"""Train the shipped scene models (:mod:`taskcodec.zoo.vlm`) on generated scenes.

    python scripts/train_scene_models.py --model blip --out src/taskcodec/zoo/trained
    python scripts/train_scene_models.py --model vit --out src/taskcodec/zoo/trained

``blip``: the captioner and the VQA model with their shared vision model, trained together
(per step: the caption loss against one of each scene's five reference captions, drawn at
random, plus the answer loss of four of its questions). ``blip --vqa-only``: from ``--init``,
only the VQA model's text side (question encoder and answer decoder) trains, on every question
of each scene, over the vision model's token maps computed once (the vision model and the
captioner stay bit for bit as they are, so captions and token-map codecs do not change).
``vit``: the 24-class scene classifier.
The defaults are the shipped settings (seed 0, ``--scenes`` training scenes of
:func:`taskcodec.zoo.scenes.scene` with seed 0, AdamW, warm-up then cosine decay, one CPU
thread). The scenes are rendered once into ``<data dir>/scene_cache`` (uint8, memory-mapped).

Writes ``<out>/scenes-<model>.safetensors`` (float16) and ``<out>/scenes-<model>.json`` (the
settings, the training time, the machine, and the validation scores measured at the end on
``--val`` validation scenes, split ``val``, which are never trained on).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
from tqdm.auto import tqdm

from taskcodec._cache import data_cache_dir
from taskcodec.zoo import scenes, vlm


def scene_cache(seed: int, n: int) -> Tuple[np.ndarray, List[scenes.Scene]]:
    """Images of training scenes ``0 .. n-1`` (a uint8 memmap) and their scenes (no images)."""
    import dataclasses
    import pickle

    folder = data_cache_dir() / "scene_cache"
    folder.mkdir(parents=True, exist_ok=True)
    img_path, meta_path = folder / f"train-s{seed}-n{n}.u8", folder / f"train-s{seed}-n{n}.pkl"
    shape = (n, scenes.SIZE, scenes.SIZE, 3)
    if not meta_path.is_file():
        images = np.lib.format.open_memmap(str(img_path), mode="w+", dtype=np.uint8, shape=shape)
        meta = []
        for i in tqdm(range(n), desc="rendering scenes"):
            s = scenes.scene(seed, "train", i)
            images[i] = s.image
            meta.append(dataclasses.replace(s, image=np.zeros((0,), np.uint8)))
        images.flush()
        del images
        meta_path.write_bytes(pickle.dumps(meta))
    return np.load(str(img_path), mmap_mode="r"), pickle.loads(meta_path.read_bytes())


def schedule(step: int, steps: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(steps - warmup, 1)))


def vqa_loss(vqa: Any, emb: torch.Tensor, qa: List[Tuple[str, str]], bos: int) -> torch.Tensor:
    """The answer loss of questions and answers ``qa``; ``emb``: the token map of each one's scene."""
    tok = vlm.tokenizer()
    q = tok([x for x, _ in qa], padding=True, return_tensors="pt")
    a = tok([x for _, x in qa], padding=True, return_tensors="pt")
    aid = a.input_ids.clone()
    aid[:, 0] = bos
    qe = vlm.question_states(vqa, emb, q.input_ids, q.attention_mask)
    return vqa.text_decoder(input_ids=aid, attention_mask=a.attention_mask, encoder_hidden_states=qe,
                            encoder_attention_mask=q.attention_mask,
                            labels=aid.masked_fill(a.attention_mask == 0, -100), reduction="mean").loss


def blip_losses(captioner: Any, vqa: Any, x: torch.Tensor, batch: List[scenes.Scene],
                rng: np.random.Generator, questions: int) -> Tuple[torch.Tensor, torch.Tensor]:
    tok = vlm.tokenizer()
    bos = captioner.config.text_config.bos_token_id
    emb = vqa.vision_model(pixel_values=x).last_hidden_state
    cap = tok([s.captions[int(rng.integers(len(s.captions)))] for s in batch], padding=True,
              return_tensors="pt")
    ids = cap.input_ids.clone()
    ids[:, 0] = bos  # [DEC] caption [SEP]
    l_cap = captioner.text_decoder(input_ids=ids, attention_mask=cap.attention_mask,
                                   encoder_hidden_states=emb,
                                   labels=ids.masked_fill(cap.attention_mask == 0, -100),
                                   reduction="mean").loss
    qa = [s.qa[int(k)] for s in batch for k in rng.choice(len(s.qa), size=questions, replace=False)]
    l_vqa = vqa_loss(vqa, emb.repeat_interleave(questions, 0), qa, bos)
    return l_cap, l_vqa


def vision_maps(vqa: Any, images: np.ndarray) -> np.ndarray:
    """The vision model's token maps of all ``images`` (float16, computed once)."""
    maps = []
    with torch.inference_mode():
        for i in tqdm(range(0, len(images), 250), desc="token maps"):
            x = vlm.pixels(np.asarray(images[i:i + 250]))
            maps.append(vqa.vision_model(pixel_values=x).last_hidden_state.numpy().astype(np.float16))
    return np.concatenate(maps)


def evaluate_blip(captioner: Any, vqa: Any, val: List[scenes.Scene]) -> Dict[str, float]:
    import sacrebleu

    hyps, refs, right, total = [], [], 0, 0
    for i in range(0, len(val), 32):
        part = val[i:i + 32]
        with torch.inference_mode():
            emb = vqa.vision_model(pixel_values=vlm.pixels(np.stack([s.image for s in part]))).last_hidden_state
        hyps += vlm.caption(captioner, emb)
        refs += [s.captions for s in part]
        qs = [(j, q, a) for j, s in enumerate(part) for q, a in s.qa]
        got = vlm.answer(vqa, emb[[j for j, _, _ in qs]], [q for _, q, _ in qs])
        right += sum(g == a for g, (_, _, a) in zip(got, qs))
        total += len(qs)
    bleu = sacrebleu.corpus_bleu(hyps, [list(r) for r in zip(*refs)]).score
    return {"bleu4": round(bleu, 2), "vqa_accuracy": round(100 * right / total, 2)}


def evaluate_vit(vit: Any, val: List[scenes.Scene]) -> Dict[str, float]:
    right = 0
    for i in range(0, len(val), 64):
        part = val[i:i + 64]
        with torch.inference_mode():
            logits = vit(pixel_values=vlm.pixels(np.stack([s.image for s in part]))).logits
        right += int((logits.argmax(1) == torch.tensor([s.label for s in part])).sum())
    return {"accuracy": round(100 * right / len(val), 2)}


def main(argv: Any = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=("blip", "vit"), required=True)
    ap.add_argument("--out", type=Path, required=True, help="folder for the weights and record")
    ap.add_argument("--scenes", type=int, default=30000, help="training scenes")
    ap.add_argument("--val", type=int, default=500, help="validation scenes scored at the end")
    ap.add_argument("--steps", type=int, default=None, help="default: 6000 (blip), 10000 (vit)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--questions", type=int, default=4, help="questions per scene and step (blip)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--vqa-only", action="store_true",
                    help="blip, with --init: train the VQA model's text side only, on every question "
                    "of each scene, over token maps computed once")
    ap.add_argument("--init", type=Path, default=None,
                    help="a folder holding scenes-<model>.safetensors to continue training from")
    ap.add_argument("--vision-from", type=Path, default=None,
                    help="blip: a folder holding scenes-vit.safetensors; the vision model starts "
                    "as that classifier's encoder (taskcodec.zoo.vlm.vision_state_from_vit)")
    args = ap.parse_args(argv)
    if args.vqa_only and (args.model != "blip" or args.init is None or args.vision_from is not None):
        ap.error("--vqa-only trains the VQA text side of an --init blip (and takes no --vision-from)")
    steps = args.steps or (6000 if args.model == "blip" else 10000)
    torch.set_num_threads(args.threads)
    images, meta = scene_cache(0, args.scenes)
    val = scenes.scenes(0, "val", args.val)
    rng = np.random.default_rng(args.seed)
    if args.model == "blip":
        captioner, vqa = vlm.build_blip(args.seed)
        params = list({id(p): p for p in [*captioner.parameters(), *vqa.parameters()]}.values())
    else:
        vit = vlm.build_vit(args.seed)
        params = list(vit.parameters())
    init_digest = None
    if args.init is not None:
        path = args.init / f"scenes-{args.model}.safetensors"
        init_digest = hashlib.sha256(path.read_bytes()).hexdigest()
        vlm.load_weights(vlm.blip_module(captioner, vqa) if args.model == "blip" else vit, path)
        if args.model == "blip":
            captioner.tie_weights(), vqa.tie_weights()
    vision_digest = None
    if args.vision_from is not None and args.model == "blip":
        path = args.vision_from / "scenes-vit.safetensors"
        vision_digest = hashlib.sha256(path.read_bytes()).hexdigest()
        vit = vlm.build_vit()
        vlm.load_weights(vit, path)
        vqa.vision_model.load_state_dict(vlm.vision_state_from_vit(vit))
    maps = None
    if args.vqa_only:
        for p in vqa.vision_model.parameters():
            p.requires_grad_(False)
        params = list({id(p): p for n, p in vqa.named_parameters()
                       if not n.startswith("vision_model") and p.requires_grad}.values())
        captioner.eval(), vqa.eval()
        maps = vision_maps(vqa, images)
        vqa.train()
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: schedule(s, steps, args.warmup))
    t0 = time.time()
    bar = tqdm(range(steps), desc=f"training scenes-{args.model}")
    for step in bar:
        idx = np.sort(rng.choice(len(meta), size=args.batch, replace=False))
        if maps is not None:
            emb = torch.from_numpy(maps[idx].astype(np.float32))
            qa = [(j, q, a) for j, i in enumerate(idx) for q, a in meta[i].qa]  # every question
            loss = vqa_loss(vqa, emb[[j for j, _, _ in qa]], [(q, a) for _, q, a in qa],
                            captioner.config.text_config.bos_token_id)
            shown = {"vqa": f"{float(loss):.3f}"}
        elif args.model == "blip":
            x = vlm.pixels(np.asarray(images[idx]))
            l_cap, l_vqa = blip_losses(captioner, vqa, x, [meta[i] for i in idx], rng, args.questions)
            loss = l_cap + l_vqa
            shown = {"caption": f"{float(l_cap):.3f}", "vqa": f"{float(l_vqa):.3f}"}
        else:
            x = vlm.pixels(np.asarray(images[idx]))
            loss = vit(pixel_values=x, labels=torch.tensor([meta[i].label for i in idx])).loss
            shown = {"loss": f"{float(loss):.3f}"}
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0:
            bar.set_postfix(shown)
    train_s = time.time() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    name = f"scenes-{args.model}"
    if args.model == "blip":
        captioner.eval(), vqa.eval()
        scores = evaluate_blip(captioner, vqa, val)
        state = vlm.blip_state(captioner, vqa)
        n_params = sum(p.numel() for p in params)
    else:
        vit.eval()
        scores = evaluate_vit(vit, val)
        state = vit.state_dict()
        n_params = sum(p.numel() for p in params)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in state.items()
             if not k.endswith(("predictions.decoder.weight", "predictions.decoder.bias"))}
    save_file(state, str(args.out / f"{name}.safetensors"))
    digest = hashlib.sha256((args.out / f"{name}.safetensors").read_bytes()).hexdigest()
    rec = {
        "model": name, "seed": args.seed, "scenes_seed": 0, "train_scenes": args.scenes,
        "steps": steps, "batch": args.batch,
        "questions_per_scene": ("all" if args.vqa_only else args.questions) if args.model == "blip" else None,
        "lr": args.lr, "warmup": args.warmup, "weight_decay": 0.05, "threads": args.threads,
        "init_sha256": init_digest, "vision_from_sha256": vision_digest, "parameters": int(n_params), "stored_as": "float16", "sha256": digest,
        "train_seconds": round(train_s, 1), "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": sys.version.split()[0], "torch": torch.__version__,
        "validation": {"scenes": args.val, "split": "val", "float32_weights": scores},
        "command": "python scripts/train_scene_models.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    if args.vqa_only:  # one more stage of the init's model: keep the stages before it
        prior = json.loads((args.init / f"{name}.json").read_text())
        stages = prior.get("stages", [])
        what = "the VQA model's text side only, every question of each scene, over frozen token maps"
        stages.append({"stage": len(stages) + 1, "what": what, "steps": steps, "batch": args.batch,
                       "lr": args.lr, "warmup": args.warmup, "seed": args.seed,
                       "train_seconds": rec["train_seconds"], "validation": scores})
        rec.update(stages=stages, command=prior.get("command", "") + " && " + rec["command"],
                   train_seconds_total=round(sum(st["train_seconds"] for st in stages), 1),
                   vision_from_sha256=prior.get("vision_from_sha256"))
    (args.out / f"{name}.json").write_text(json.dumps(rec, indent=2) + "\n")
    print(json.dumps(rec, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
