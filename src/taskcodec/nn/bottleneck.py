"""Learned task bottleneck: encoder → quantizer → learned density → decoder, trained for the task.

The idea of the information bottleneck for task-oriented communication (Shao & Zhang) and of
the "entropic student" of supervised compression for split computing (Matsubara et al.): keep
only what the task needs. The encoder reduces the cut's channels; a quantizer (additive uniform
noise, or straight-through rounding, while training; rounding at test) makes the code
discrete; CompressAI's ``EntropyBottleneck`` is the learned, factorized density whose
``-log2`` likelihood is the rate; the decoder maps back to the tail's input. The loss is the
task loss (cross-entropy, or distillation to the uncompressed model's logits) plus ``λ`` times
the bits per sample. :meth:`TaskBottleneck.update` turns the learned density into a
:class:`taskcodec.CdfTable`; :meth:`~TaskBottleneck.compress` / :meth:`~TaskBottleneck.decompress`
code through taskcodec's rANS frames, not CompressAI's coder.
"""

from __future__ import annotations

import dataclasses

from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import taskcodec as tc
from taskcodec.errors import TaskcodecError

__all__ = ["TaskBottleneck", "BottleneckOutput", "train_bottleneck", "evaluate_bottleneck",
           "lambda_sweep"]

_CDF_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length")


@dataclasses.dataclass
class BottleneckOutput:
    """What :meth:`TaskBottleneck.forward` returns."""

    features: torch.Tensor  # decoder output, the tail's input
    bits: torch.Tensor  # [N] estimated bits per sample (-log2 likelihood of the code)
    code: torch.Tensor  # the (noisy / rounded) latent the density saw


class TaskBottleneck(nn.Module):
    """Encoder → quantizer → ``compressai.entropy_models.EntropyBottleneck`` → decoder.

    Args:
        in_channels: channels of the activation at the cut (the tail's input).
        bottleneck_channels: channels of the coded latent.
        hidden: width of the encoder/decoder's inner layer (default ``in_channels``).
        kernel_size: spatial kernel of the outer convolutions (odd; 1 for token maps
            flattened as ``[N, C, T]`` is fine too: the layers are ``Conv2d``, so give
            ``[N, C, H, W]`` inputs).
        quantizer: ``"ste"`` (the default: rounding with a straight-through gradient for the
            decoder's input; the rate still uses the noisy latent, as the entropic student
            does) or ``"noise"`` (the decoder sees the latent plus uniform noise while
            training; in short runs it learns latents smaller than the rounding step, which
            rounding at test time then destroys, docs/features.md).
        precision: bits of the taskcodec tables built by :meth:`update`.
    """

    def __init__(
        self,
        in_channels: int,
        bottleneck_channels: int,
        *,
        hidden: Optional[int] = None,
        kernel_size: int = 3,
        quantizer: str = "ste",
        precision: int = 14,
    ) -> None:
        super().__init__()
        from compressai.entropy_models import EntropyBottleneck

        if quantizer not in ("noise", "ste"):
            raise TaskcodecError(f"quantizer must be 'noise' or 'ste', got {quantizer!r}")
        if kernel_size % 2 != 1:
            raise TaskcodecError(f"kernel_size must be odd, got {kernel_size}")
        hidden = hidden or in_channels
        pad = kernel_size // 2
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, hidden, kernel_size, padding=pad),
            nn.GELU(),
            nn.Conv2d(hidden, bottleneck_channels, 1),
        )
        self.entropy = EntropyBottleneck(bottleneck_channels)
        self.decoder = nn.Sequential(
            nn.Conv2d(bottleneck_channels, hidden, 1),
            nn.GELU(),
            nn.Conv2d(hidden, in_channels, kernel_size, padding=pad),
        )
        self.quantizer = quantizer
        self.precision = int(precision)
        self.in_channels = int(in_channels)
        self.bottleneck_channels = int(bottleneck_channels)
        self._table: Optional[tc.CdfTable] = None

    # ------------------------------------------------------------------ training path
    def forward(self, x: torch.Tensor) -> BottleneckOutput:
        """Features for the tail plus the estimated bits per sample (differentiable)."""
        y = self.encoder(x)
        y_tilde, likelihoods = self.entropy(y)
        if self.training and self.quantizer == "ste":
            medians = self.entropy._get_medians().detach().view(1, -1, 1, 1)
            y_round = torch.round(y - medians) + medians
            y_dec = y + (y_round - y).detach()
        else:
            y_dec = y_tilde
        bits = -torch.log2(likelihoods).flatten(1).sum(dim=1)
        return BottleneckOutput(self.decoder(y_dec), bits, y_tilde)

    def aux_loss(self) -> torch.Tensor:
        """CompressAI's quantile loss (fits the density's tail bounds; own optimizer)."""
        return self.entropy.loss()

    # ------------------------------------------------------------------ coding path
    @torch.no_grad()
    def update(self) -> tc.CdfTable:
        """Freeze the learned density into integer tables (call after training or loading).

        Each channel's table covers the integers between its density's tail quantiles (as
        trained: the medians the decoder was trained with are kept, as CompressAI does);
        symbols are ``round(y - median)`` and their probabilities the learned likelihood of
        each integer bin; the mass beyond both tails becomes the escape weight.
        """
        eb = self.entropy
        eb.update(force=True)
        medians = eb.quantiles[:, 0, 1]
        minima = torch.clamp(torch.ceil(medians - eb.quantiles[:, 0, 0]).int(), min=0)
        maxima = torch.clamp(torch.ceil(eb.quantiles[:, 0, 2] - medians).int(), min=0)
        lengths = (minima + maxima + 1).long()
        width = int(lengths.max())
        samples = torch.arange(width, dtype=medians.dtype)[None, :] + (medians - minima)[:, None]
        pmf, lower, upper = eb._likelihood(samples[:, None, :], stop_gradient=True)
        pmf = pmf[:, 0, :].double().numpy()
        mask = np.arange(width)[None, :] < lengths.numpy()[:, None]
        pmf = np.where(mask, np.maximum(pmf, 0.0), 0.0)
        tail = (torch.sigmoid(lower[:, 0, 0]) + torch.sigmoid(-upper[:, 0, -1])).double().numpy()
        escape = np.maximum(tail, pmf.sum(axis=1) * 2.0 ** -(self.precision + 2))
        self._table = tc.CdfTable.from_pmf(pmf, (-minima).numpy(), self.precision,
                                           lengths=lengths.numpy(), escape=escape)
        return self._table

    @property
    def table(self) -> tc.CdfTable:
        """The taskcodec tables (:meth:`update` builds them)."""
        if self._table is None:
            raise TaskcodecError("call TaskBottleneck.update() before compress/decompress")
        return self._table

    def _medians(self) -> torch.Tensor:
        return self.entropy._get_medians().detach().view(1, -1, 1, 1)

    @torch.no_grad()
    def compress(self, x: torch.Tensor, *, lanes: Optional[int] = None) -> bytes:
        """Encode the cut's activations ``x [N, C, H, W]`` into one taskcodec frame."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise TaskcodecError(
                f"expected [N, {self.in_channels}, H, W] activations, got {tuple(x.shape)}"
            )
        y = self.encoder(x)
        s = torch.round(y - self._medians()).to(torch.int32).cpu().numpy()
        if lanes is None:
            lanes = 1
            while lanes < 32 and s.size >= 1024 * lanes:
                lanes *= 2
        return tc.encode(s, self.table, channel_axis=1, lanes=lanes)

    @torch.no_grad()
    def decode_latent(self, blob: Any) -> torch.Tensor:
        """The dequantized latent ``round(y - median) + median`` of a frame."""
        s = tc.decode(blob, self.table)  # TableMismatchError for frames of another model
        return torch.from_numpy(s).float() + self._medians()

    @torch.no_grad()
    def decompress(self, blob: Any) -> torch.Tensor:
        """The tail's input reconstructed from a frame made by :meth:`compress`."""
        return self.decoder(self.decode_latent(blob))

    # ------------------------------------------------------------------ persistence
    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Like ``nn.Module.load_state_dict``, resizing the density's CDF buffers first."""
        from compressai.models.utils import update_registered_buffers

        update_registered_buffers(self.entropy, "entropy", list(_CDF_BUFFERS), state_dict,
                                  policy="resize")
        out = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self._table = None
        return out


# ---------------------------------------------------------------------------- training
def _task_loss(logits: torch.Tensor, labels: Optional[torch.Tensor], teacher: Optional[torch.Tensor],
               temperature: float) -> torch.Tensor:
    if teacher is not None:
        t = temperature
        return F.kl_div(F.log_softmax(logits / t, 1), F.log_softmax(teacher / t, 1),
                        log_target=True, reduction="batchmean") * t * t
    if labels is None:
        raise TaskcodecError("no labels: pass distill=True to train against the teacher's logits")
    return F.cross_entropy(logits, labels)


def train_bottleneck(
    bottleneck: TaskBottleneck,
    tail: nn.Module,
    batches: Callable[[], Iterable[Any]],
    *,
    lam: float,
    epochs: int = 1,
    lr: float = 1e-3,
    density_lr: float = 1e-2,
    aux_lr: float = 1e-2,
    train_tail: bool = True,
    distill: bool = False,
    temperature: float = 1.0,
    checkpoint: Union[str, Path, None] = None,
    progress: bool = True,
    desc: Optional[str] = None,
) -> List[Dict[str, float]]:
    """Train ``bottleneck`` (and optionally ``tail``) for ``loss = task + lam * bits/sample``.

    Args:
        bottleneck: the :class:`TaskBottleneck` to train.
        tail: the model's tail (takes the decoder's output). With ``train_tail`` it is
            fine-tuned too; its original logits serve as the teacher for ``distill``.
        batches: called once per epoch, returns an iterable of ``(features, labels)``
            (activations at the cut, from the frozen head) or ``(features,)`` when
            ``distill`` is set and there are no labels.
        lam: weight of the rate term (bits per sample).
        lr, density_lr, aux_lr: Adam learning rates of the encoder/decoder/tail, of the learned
            density (higher: short runs must fit it quickly) and of its tail quantiles.
        distill: use KL divergence to the uncompressed tail's logits instead of labels.
        checkpoint: a path: the state (bottleneck, tail, optimizers, history) is written there
            after every epoch and training resumes from it when it exists.
        progress: show a tqdm progress bar.

    Returns:
        one dict per epoch: mean ``loss``, ``task`` loss, ``bits`` per sample, ``accuracy``
        (when labels are given), ``aux`` loss. Calls :meth:`TaskBottleneck.update` at the end.
    """
    import copy

    from tqdm.auto import tqdm

    if not lam >= 0:
        raise TaskcodecError(f"lam must be >= 0, got {lam}")
    teacher = copy.deepcopy(tail).eval() if distill else None
    params = list(bottleneck.encoder.parameters()) + list(bottleneck.decoder.parameters())
    density = [p for n, p in bottleneck.entropy.named_parameters() if not n.endswith("quantiles")]
    if train_tail:
        params += list(tail.parameters())
    else:
        for p in tail.parameters():
            p.requires_grad_(False)
    opt = torch.optim.Adam([{"params": params, "lr": lr},
                            {"params": density, "lr": density_lr}])
    aux_opt = torch.optim.Adam([bottleneck.entropy.quantiles], lr=aux_lr)
    history: List[Dict[str, float]] = []
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        bottleneck.load_state_dict(state["bottleneck"])
        tail.load_state_dict(state["tail"])
        opt.load_state_dict(state["opt"])
        aux_opt.load_state_dict(state["aux_opt"])
        history = [dict(h) for h in state["history"]]
    for epoch in range(len(history), epochs):
        bottleneck.train()
        tail.train(train_tail)
        sums = {"loss": 0.0, "task": 0.0, "bits": 0.0, "aux": 0.0, "correct": 0.0}
        n = 0
        bar = tqdm(batches(), desc=desc or f"λ={lam:g} epoch {epoch + 1}/{epochs}",
                   disable=not progress, leave=False)
        for batch in bar:
            feats = batch[0]
            labels = batch[1] if len(batch) > 1 and not distill else None
            with torch.no_grad():
                t_logits = teacher(feats) if teacher is not None else None
            out = bottleneck(feats)
            logits = tail(out.features)
            task = _task_loss(logits, labels, t_logits, temperature)
            bits = out.bits.mean()
            loss = task + lam * bits
            opt.zero_grad()
            loss.backward()
            opt.step()
            aux = bottleneck.aux_loss()
            aux_opt.zero_grad()
            aux.backward()
            aux_opt.step()
            b = feats.shape[0]
            n += b
            sums["loss"] += loss.item() * b
            sums["task"] += task.item() * b
            sums["bits"] += bits.item() * b
            sums["aux"] += aux.item() * b
            if labels is not None:
                sums["correct"] += float((logits.argmax(1) == labels).sum())
            bar.set_postfix(task=f"{sums['task'] / n:.3f}", bits=f"{sums['bits'] / n:.1f}")
        if n == 0:
            raise TaskcodecError("batches() yielded no data")
        rec = {k: v / n for k, v in sums.items() if k != "correct"}
        rec["accuracy"] = sums["correct"] / n if not distill else float("nan")
        rec["epoch"] = epoch + 1
        history.append(rec)
        if ckpt is not None:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            tmp = ckpt.with_suffix(ckpt.suffix + ".tmp")
            torch.save({"bottleneck": bottleneck.state_dict(), "tail": tail.state_dict(),
                        "opt": opt.state_dict(), "aux_opt": aux_opt.state_dict(),
                        "history": history, "lam": lam}, tmp)
            tmp.replace(ckpt)
    bottleneck.eval()
    tail.eval()
    bottleneck.update()
    return history


@torch.no_grad()
def evaluate_bottleneck(
    bottleneck: TaskBottleneck,
    tail: nn.Module,
    batches: Iterable[Any],
    *,
    per_sample_frames: bool = True,
) -> Dict[str, float]:
    """Accuracy and real frame bytes through taskcodec's coder (not the rate estimate).

    With ``per_sample_frames`` every sample is its own frame (a device sending one input at a
    time); otherwise each batch is one frame. Returns ``accuracy``, ``bytes_per_sample``,
    ``estimated_bits_per_sample`` (the density's ``-log2`` likelihood) and ``samples``.
    """
    bottleneck.eval()
    tail.eval()
    if bottleneck._table is None:
        bottleneck.update()
    correct, nbytes, n, est = 0, 0, 0, 0.0
    for feats, labels in batches:
        if per_sample_frames:
            blobs = [bottleneck.compress(feats[i : i + 1]) for i in range(feats.shape[0])]
            latent = torch.cat([bottleneck.decode_latent(b) for b in blobs])
            nbytes += sum(len(b) for b in blobs)
        else:
            blob = bottleneck.compress(feats)
            latent = bottleneck.decode_latent(blob)
            nbytes += len(blob)
        logits = tail(bottleneck.decoder(latent))
        correct += int((logits.argmax(1) == labels).sum())
        est += float(bottleneck(feats).bits.sum())
        n += feats.shape[0]
    return {"accuracy": correct / n, "bytes_per_sample": nbytes / n,
            "estimated_bits_per_sample": est / n, "samples": n}


def lambda_sweep(
    make_bottleneck: Callable[[], TaskBottleneck],
    make_tail: Callable[[], nn.Module],
    batches: Callable[[], Iterable[Any]],
    lams: Sequence[float],
    *,
    checkpoint_dir: Union[str, Path, None] = None,
    **train_kwargs: Any,
) -> List[Dict[str, Any]]:
    """Train one bottleneck (and tail copy) per ``λ`` in ``lams``.

    Returns one dict per λ: ``lam``, ``bottleneck``, ``tail``, ``history``. With
    ``checkpoint_dir`` each run checkpoints to ``bottleneck_lam{λ}.pt`` there (and resumes).
    """
    runs = []
    for lam in lams:
        bn, tail = make_bottleneck(), make_tail()
        ckpt = None if checkpoint_dir is None else Path(checkpoint_dir) / f"bottleneck_lam{lam:g}.pt"
        hist = train_bottleneck(bn, tail, batches, lam=lam, checkpoint=ckpt, **train_kwargs)
        runs.append({"lam": lam, "bottleneck": bn, "tail": tail, "history": hist})
    return runs


