"""Distillation of a split codec's bottleneck against the uncompressed model (no labels).

The training loop behind :meth:`taskcodec.nn.SplitCodec.fit`, kept apart from the module so it
works on any bottleneck with the same small interface: ``bottleneck(features)`` returns
``(tail_input, bits_per_element)``, ``bottleneck.feature_scale`` holds one scale per channel
(for the feature loss) and ``bottleneck.density_parameters()`` lists the rate model's
parameters (their own learning rate).

* :func:`cache_activations` runs the frozen head (and the uncompressed tail, the teacher) once
  over the training images; training then never runs the head again, which is what makes CPU
  training feasible.
* :func:`distill` trains: a feature warm-up (per-channel normalized MSE to the head's
  activations, + λ · bits), then ``KL(teacher softmax ‖ student softmax) + λ · bits``;
  straight-through rounding, Adam, a tqdm bar, and a checkpoint that it resumes from.
* :func:`agreement` gives the three label-free quality figures of docs/features.md: top-1
  agreement on all views, on the confident ones (teacher max p ≥ 0.5), and the
  teacher-expected accuracy loss in points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F

from taskcodec.errors import ArgumentTypeError, TaskcodecError

__all__ = ["cache_activations", "distill", "agreement", "kl_to_teacher", "pick_device"]

_CKPT_FORMAT = "taskcodec.SplitCodec.checkpoint"
_CKPT_VERSION = 1


def pick_device(device: Union[str, torch.device, None] = None) -> torch.device:
    """``device``, else CUDA when available, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _batches(images: Any, batch_size: int) -> Iterable[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise TaskcodecError(f"images must be [N, 3, H, W], got shape {tuple(images.shape)}")
        for i in range(0, images.shape[0], batch_size):
            yield images[i : i + batch_size]
        return
    if isinstance(images, (str, bytes)) or not hasattr(images, "__iter__"):
        raise ArgumentTypeError(f"images must be a tensor or an iterable of batches, got {type(images).__name__}")
    for b in images:
        if isinstance(b, (tuple, list)):  # (images, labels) from a DataLoader: labels unused
            b = b[0]
        if not isinstance(b, torch.Tensor) or b.ndim != 4:
            raise TaskcodecError("every batch must be an image tensor [n, 3, H, W]")
        yield b


@torch.no_grad()
def cache_activations(head: nn.Module, tail: nn.Module, images: Any, *, batch_size: int = 64,
                      device: Union[str, torch.device, None] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(activations, teacher_logits)`` of ``images`` (a tensor ``[N, 3, H, W]`` or an iterable
    of such batches), on the CPU in float32: the head's output and the uncompressed tail's.
    Both run on ``device`` (default CUDA when available) and go back where they were."""
    dev = pick_device(device)
    acts: List[torch.Tensor] = []
    logits: List[torch.Tensor] = []
    homes = [next(m.parameters(), torch.empty(0)).device for m in (head, tail)]
    head.to(dev).eval()
    tail.to(dev).eval()
    try:
        for b in _batches(images, batch_size):
            a = head(b.to(dev).float())
            if a.ndim != 4:
                raise TaskcodecError(f"the head must output [N, C, H, W] activations, got {tuple(a.shape)}")
            t = tail(a)
            acts.append(a.float().cpu())
            logits.append(t.float().cpu())
    finally:
        head.to(homes[0])
        tail.to(homes[1])
    if not acts:
        raise TaskcodecError("no training images")
    return torch.cat(acts), torch.cat(logits)


def kl_to_teacher(logits: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``KL(softmax(teacher / T) ‖ softmax(logits / T)) · T²``, mean over the batch."""
    t = float(temperature)
    return F.kl_div(F.log_softmax(logits / t, 1), F.log_softmax(teacher / t, 1),
                    log_target=True, reduction="batchmean") * t * t


@torch.no_grad()
def agreement(teacher: torch.Tensor, logits: torch.Tensor) -> Dict[str, float]:
    """Label-free quality of ``logits`` against the uncompressed model's ``teacher`` logits:
    ``agreement`` (top-1, all views), ``confident_agreement`` (views with teacher max p ≥ 0.5;
    NaN when there are none), ``confident_views``, ``expected_loss_pt`` (mean of
    ``max p − p[student top-1]``, in points) and ``kl``."""
    p = F.softmax(teacher.float(), 1)
    pmax, top_t = p.max(1)
    top_s = logits.argmax(1)
    same = (top_s == top_t).float()
    conf = pmax >= 0.5
    return {
        "agreement": float(same.mean()),
        "confident_agreement": float(same[conf].mean()) if bool(conf.any()) else float("nan"),
        "confident_views": int(conf.sum()),
        "expected_loss_pt": 100.0 * float((pmax - p.gather(1, top_s[:, None])[:, 0]).mean()),
        "kl": float(kl_to_teacher(logits.float(), teacher.float())),
    }


def _save_checkpoint(path: Path, step: int, bottleneck: nn.Module, opt: Any,
                     history: List[Dict[str, float]], lam: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": _CKPT_FORMAT, "version": _CKPT_VERSION, "step": step, "lam": lam,
                "bottleneck": {k: v.detach().cpu() for k, v in bottleneck.state_dict().items()},
                "opt": opt.state_dict(), "history": history}, tmp)
    tmp.replace(path)


def _load_checkpoint(path: Path, bottleneck: nn.Module, opt: Any) -> Tuple[int, List[Dict[str, float]]]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("format") != _CKPT_FORMAT or state.get("version") != _CKPT_VERSION:
            raise TaskcodecError(f"{path} is not a {_CKPT_FORMAT} v{_CKPT_VERSION} file")
        bottleneck.load_state_dict(state["bottleneck"])
        opt.load_state_dict(state["opt"])
        return int(state["step"]), [dict(h) for h in state["history"]]
    except TaskcodecError:
        raise
    except Exception as e:  # pickle / zip / key / shape errors of a damaged or foreign file
        raise TaskcodecError(f"cannot resume from {path}: {e}") from e


def distill(
    bottleneck: nn.Module,
    tail: nn.Module,
    activations: torch.Tensor,
    teacher: torch.Tensor,
    *,
    lam: float,
    steps: int,
    warmup: Optional[int] = None,
    density_warmup: int = 0,
    batch_size: int = 32,
    lr: float = 1e-4,
    density_lr: float = 1e-2,
    temperature: float = 1.0,
    checkpoint: Union[str, Path, None] = None,
    checkpoint_every: int = 100,
    device: Union[str, torch.device, None] = None,
    progress: bool = True,
    seed: int = 0,
) -> List[Dict[str, float]]:
    """Train ``bottleneck`` in front of the frozen ``tail`` on cached head ``activations``.

    Steps ``0 .. warmup-1`` minimize the feature loss (MSE to the activations, per channel
    divided by ``bottleneck.feature_scale``) + ``lam`` · bits per latent element; the rest
    ``kl_to_teacher + lam · bits``. During the first ``density_warmup`` steps only the rate
    model is updated (its estimate of the start's bits converges before it steers the
    transforms): the tail does not run, and those records' ``task`` is NaN. Each step draws ``batch_size`` cached views at random
    (seeded by ``seed`` and the step number, so a resumed run draws what an unbroken one
    would). With ``checkpoint``, the state is written there every ``checkpoint_every`` steps
    and at the end, and a run finds it and continues from its step. The tail's parameters
    are left as they were (frozen during the run). Returns one record per step: ``step``,
    ``phase`` (0 warm-up, 1 distillation), ``loss``, ``task`` (feature MSE or KL), ``bits``
    (per latent element). The bottleneck is left on ``device`` in eval mode.
    """
    from tqdm.auto import tqdm

    if not lam >= 0:
        raise TaskcodecError(f"lam must be >= 0, got {lam}")
    if steps < 0 or batch_size < 1 or checkpoint_every < 1:
        raise TaskcodecError("steps must be >= 0, batch_size and checkpoint_every >= 1")
    n = activations.shape[0]
    if n == 0 or teacher.shape[0] != n:
        raise TaskcodecError(f"{n} cached activations but {teacher.shape[0]} teacher outputs")
    warmup = steps // 5 if warmup is None else int(warmup)
    dev = pick_device(device)
    bottleneck.to(dev)
    tail_device = next(tail.parameters(), torch.empty(0)).device
    tail.to(dev).eval()
    density = list(bottleneck.density_parameters())
    ids = {id(p) for p in density}
    transform = [p for p in bottleneck.parameters() if id(p) not in ids]
    opt = torch.optim.Adam([{"params": transform, "lr": lr}, {"params": density, "lr": density_lr}])
    ckpt = Path(checkpoint) if checkpoint is not None else None
    start, history = 0, []
    if ckpt is not None and ckpt.is_file():
        start, history = _load_checkpoint(ckpt, bottleneck, opt)
        bottleneck.to(dev)
    scale = bottleneck.feature_scale.view(1, -1, 1, 1).to(dev)
    frozen = [(p, p.requires_grad) for p in tail.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)
    try:
        bottleneck.train()
        bar = tqdm(range(start, steps), initial=start, total=steps, disable=not progress,
                   desc=f"split codec λ={lam:g}", leave=False)
        for step in bar:
            g = torch.Generator().manual_seed(seed * 1_000_003 + step)
            idx = torch.randint(n, (min(batch_size, n),), generator=g)
            a = activations[idx].to(dev).float()  # a float16 cache is widened per batch
            out, bits = bottleneck(a)
            if step < density_warmup:  # only the rate term reaches the rate model: no tail
                task = torch.full((), float("nan"))
            elif step < warmup:
                task = (((out - a) / scale) ** 2).mean()
            else:
                task = kl_to_teacher(tail(out), teacher[idx].to(dev).float(), temperature)
            loss = lam * bits if step < density_warmup else task + lam * bits
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if step < density_warmup:  # the rate model learns the start's latents first
                for p in transform:
                    p.grad = None
            opt.step()
            rec = {"step": step + 1, "phase": float(step >= warmup), "loss": loss.item(),
                   "task": task.item(), "bits": bits.item()}
            history.append(rec)
            bar.set_postfix(task=f"{rec['task']:.4f}", bits=f"{rec['bits']:.3f}")
            if ckpt is not None and ((step + 1) % checkpoint_every == 0 or step + 1 == steps):
                _save_checkpoint(ckpt, step + 1, bottleneck, opt, history, lam)
    finally:
        for p, req in frozen:
            p.requires_grad_(req)
        tail.to(tail_device)
    bottleneck.eval()
    return history
