"""``SplitCodec``: a model's own head, a learned bottleneck, the model's own tail — the deployable unit.

The bottleneck starts as the post-training codec (:class:`~taskcodec.nn.FeatureCodec`) and is
then distilled against the uncompressed model (:mod:`taskcodec.nn.distill`), so training can
only start from the fallback, never from noise:

* encoder ``y = W_e x + R_e(x)``: a 1×1 convolution initialised to the identity plus a residual
  branch (3×3 convolution, GELU, 1×1 convolution) whose last layer starts at zero;
* quantizer: the one per-channel quantizer (:func:`taskcodec.quantize`), its steps and zero
  points from ``FeatureCodec.calibrate`` on the training activations (fixed: the encoder
  learns any rescaling); straight-through rounding while training;
* rate: CompressAI's ``EntropyBottleneck`` on the latent in step units (uniform noise), for the
  ``λ · bits`` term only; the shipped integer tables are fitted after training on the quantized
  latents of the training set (:func:`taskcodec.fit_table`, as FeatureCodec does);
* decoder ``W_d ŷ + R_d(ŷ)``: identity 1×1 plus a zero-initialised residual branch.

At step 0 the decoder's output is exactly FeatureCodec's dequantized activation (same symbols,
same tables, same fingerprint). A frame is one standard taskcodec frame (kind feature tensor,
``meta`` = the ``TCFQ`` digest of the steps), decoded only by the codec that made it.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch
from torch import nn

import taskcodec as tc
from taskcodec.codec import quant
from taskcodec.codec.args import auto_lanes
from taskcodec.errors import CorruptStreamError, ModelMismatch, TaskcodecError
from taskcodec.nn import distill as _distill
from taskcodec.nn.feature_codec import FeatureCodec
from taskcodec.split.partition import partition
from taskcodec.nn.backbones import load_backbone
from taskcodec.nn.split_bottleneck import CDF_BUFFERS, SplitBottleneck, deployed_state

__all__ = ["SplitCodec", "SplitBottleneck", "PRETRAINED_DIR"]

PRETRAINED_DIR = Path(__file__).with_name("pretrained")
"""The trained codecs that ship with the package (``<model name>.npz``; see
``scripts/train_split_codec.py``)."""

_SAVE_FORMAT = "taskcodec.SplitCodec"
_SAVE_VERSION = 1


def _digest(module_states: List[Dict[str, torch.Tensor]]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for state in module_states:
        for k in sorted(state):
            v = state[k].detach().cpu().contiguous()
            h.update(f"{k}:{v.dtype}:{tuple(v.shape)};".encode())
            h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


@torch.no_grad()
def _coded(bn: SplitBottleneck, tail: nn.Module, acts: torch.Tensor, teacher: Optional[torch.Tensor]) -> Any:
    """``(symbols, mean KL to teacher through the coder or NaN)`` of cached activations."""
    dev = next(tail.parameters(), torch.empty(0)).device
    qs, kl = [], 0.0
    for i in range(0, acts.shape[0], 256):
        q = bn.symbols(acts[i : i + 256])
        qs.append(q)
        if teacher is not None:
            logits = tail(bn.reconstruct(q).to(dev)).float().cpu()
            kl += float(_distill.kl_to_teacher(logits, teacher[i : i + 256].float())) * q.shape[0]
    return np.concatenate(qs), (kl / acts.shape[0] if teacher is not None else float("nan"))


def _tables_and_score(bn: SplitBottleneck, tail: nn.Module, acts: torch.Tensor, teacher: torch.Tensor,
                      lam: float, precision: int, held_out: Any = None) -> Any:
    """The tables fitted to ``bn``'s symbols of the training views, and its score on the
    ``held_out`` ``(activations, teacher logits)`` (else on the training views): ``kl`` (coded
    path), ``bits_per_element`` (under those tables), ``objective`` = kl + λ · bits."""
    q, kl = _coded(bn, tail, acts, None if held_out is not None else teacher)
    table = tc.fit_table(q, channel_axis=1, precision=precision)
    if held_out is not None:
        q, kl = _coded(bn, tail, held_out[0], held_out[1])
    bits = table.cost_bits(q) / q.size
    return table, {"kl": kl, "bits_per_element": bits, "objective": kl + lam * bits}


class SplitCodec(nn.Module):
    """The model's head (to the cut ``at``), a :class:`SplitBottleneck`, the model's tail.

    Build with :meth:`fit` or :meth:`load`. ``encode(x)`` (device side) runs the head and the
    bottleneck's encoder and returns one taskcodec frame; ``decode(blob)`` (edge side) returns
    the tail's output. ``sc(x)`` is the same path without the coder (eval mode: equal to
    ``decode(encode(x))``); ``sc.head`` / ``sc.tail`` are the uncompressed reference halves.
    """

    def __init__(self, head: nn.Module, tail: nn.Module, bottleneck: SplitBottleneck,
                 table: tc.CdfTable, *, at: Any = None, info: Optional[dict] = None) -> None:
        super().__init__()
        if table.num_rows != bottleneck.channels:
            raise TaskcodecError(f"{table.num_rows} table rows for {bottleneck.channels} channels")
        self.head, self.tail, self.bottleneck = head, tail, bottleneck.cpu().eval()
        self.table = table
        self.at = at
        self.info = dict(info or {})
        self.history: List[Dict[str, float]] = []
        self._meta = quant.params_meta(bottleneck.step.numpy(), bottleneck.zero.numpy(), in_frame=False)

    # ------------------------------------------------------------------ building
    @classmethod
    def fit(cls, head: nn.Module, tail: Optional[nn.Module] = None, images: Any = None, *, lam: float = 0.01,
            steps: int = 2000, at: Any = None, warmup: Optional[int] = None,
            density_warmup: int = 0, batch_size: int = 32,
            lr: float = 1e-4, density_lr: float = 1e-2, temperature: float = 1.0,
            hidden: Optional[int] = None, bits: Optional[float] = None, step_per_std: float = 0.5,
            precision: int = 14, checkpoint: Union[str, Path, None] = None,
            checkpoint_every: int = 100, device: Union[str, torch.device, None] = None,
            progress: bool = True, seed: int = 0, val_images: Any = None,
            cached: Any = None, val_cached: Any = None, init: str = "channel") -> "SplitCodec":
        """Distill a bottleneck between ``head`` and ``tail`` (frozen) on unlabeled ``images``.

        ``fit(model, at="features.13", images=...)`` cuts a whole model first
        (:func:`taskcodec.split.partition`); ``fit(head, tail, images)`` takes the halves.

        ``images`` is ``[N, 3, H, W]`` or an iterable of such batches (``(images, labels)``
        pairs too: labels are ignored; the uncompressed model is the teacher). The head's
        activations and the teacher's logits are computed once and cached. The quantizer is
        ``FeatureCodec.calibrate(activations, bits=bits, step_per_std=step_per_std)``'s;
        ``steps=0`` returns that post-training codec in this form. ``lam`` weighs the
        estimated bits per latent element; ``warmup`` (default ``steps // 5``) steps of feature
        MSE come before the KL. ``checkpoint``: see :func:`taskcodec.nn.distill.distill`.
        ``device``: default CUDA when available. ``at`` names the cut (where the whole model is
        cut; with a head and a tail it is only recorded).
        ``lr`` (transforms) defaults to 1e-4: the identity start is a good point, and at 1e-3 Adam
        moved the 1×1 identities far enough to lose agreement on unseen photos (docs/features.md).

        The tables are fitted to the trained encoder's symbols of all training views. If the
        trained bottleneck scores worse there than the post-training start (KL to the teacher
        through the coder + ``lam`` · bits per element under its tables), the start is kept
        (``info["kept_start"]``): a learned codec is never worse than the fallback it began as.
        ``info`` also holds ``kl``, ``bits_per_element`` and ``objective`` of the result.
        ``val_images`` (views never trained on): score there instead (``info["scored_on"]``).
        ``cached``: ``(activations, teacher_logits)`` already computed with
        :func:`taskcodec.nn.distill.cache_activations` (float16 is fine); ``images`` is then unused;
        ``val_cached`` likewise for ``val_images``. ``init="task"`` starts from
        ``FeatureCodec.calibrate(..., transform="task", tail=tail)`` instead: the 1×1
        convolutions are its decorrelating transform and its inverse, the steps its one step.
        """
        if tail is None:
            if at is None:
                raise TaskcodecError("fit(model, at=...): name the cut, or pass a head and a tail")
            head, tail = partition(head, at)
        if cached is None:
            if images is None:
                raise TaskcodecError("fit needs images (or cached activations)")
            acts, teacher = _distill.cache_activations(head, tail, images, device=device)
        else:
            acts, teacher = cached
            if acts.ndim != 4 or teacher.ndim != 2 or acts.shape[0] != teacher.shape[0]:
                raise TaskcodecError(f"cached: activations [N, C, H, W] and teacher logits [N, K], "
                                     f"got {tuple(acts.shape)} and {tuple(teacher.shape)}")
        if init not in ("channel", "task"):
            raise TaskcodecError(f"init must be 'channel' or 'task', got {init!r}")
        sample = acts if acts.dtype == torch.float32 else acts[:4096].float()  # calibrate in float32
        fc = FeatureCodec.calibrate(sample, bits=bits, step_per_std=step_per_std, precision=precision,
                                    **({"transform": "task", "tail": tail} if init == "task" else {}))
        scale = (sample.std(dim=(0, 2, 3)).numpy() if init == "task"
                 else fc.steps / np.float32(fc.step_per_std))  # per-channel std of the activations
        with torch.random.fork_rng(devices=[]):  # seeded init, the caller's generator untouched
            torch.manual_seed(seed)
            bn = SplitBottleneck(fc.steps, fc.zeros, hidden=hidden, feature_scale=scale)
        if init == "task":  # the 1x1 convolutions start as T (x - mean) and T^-1 y + mean
            bn.set_linear(*fc.transform)
        initial = {k: v.clone() for k, v in bn.state_dict().items()}
        history = _distill.distill(bn, tail, acts, teacher, lam=lam, steps=steps, warmup=warmup,
                                   density_warmup=density_warmup,
                                   batch_size=batch_size, lr=lr, density_lr=density_lr,
                                   temperature=temperature, checkpoint=checkpoint,
                                   checkpoint_every=checkpoint_every, device=device,
                                   progress=progress, seed=seed)
        bn = bn.cpu().eval()
        held = val_cached
        if held is None and val_images is not None:
            held = _distill.cache_activations(head, tail, val_images, device=device)
        table, score = _tables_and_score(bn, tail, acts, teacher, lam, precision, held)
        info = {"lam": float(lam), "steps": int(steps), "step_per_std": float(fc.step_per_std), "init": init,
                "training_views": int(acts.shape[0]), "scored_on": "train" if held is None else "val",
                "kept_start": steps == 0, **score}
        if steps > 0:  # never worse than the post-training start (on the views scored)
            start = SplitBottleneck(fc.steps, fc.zeros, hidden=hidden, feature_scale=bn.feature_scale.numpy())
            start.load_state_dict(initial)
            table0, score0 = _tables_and_score(start.eval(), tail, acts, teacher, lam, precision, held)
            info["kept_start"] = score0["objective"] < score["objective"]
            info["start"], info["trained"] = score0, score
            if info["kept_start"]:
                bn, table, info = start, table0, {**info, **score0}
        sc = cls(head, tail, bn, table, at=at, info=info)
        sc.history = history
        return sc

    # ------------------------------------------------------------------ coding
    @property
    def fingerprint(self) -> int:
        """The tables' fingerprint, written into every frame."""
        return self.table.fingerprint

    def _head_device(self) -> torch.device:
        return next(self.head.parameters(), torch.empty(0)).device

    @torch.no_grad()
    def encode_features(self, features: torch.Tensor, *, lanes: Optional[int] = None) -> bytes:
        """One frame for head activations ``features [N, C, H, W]``."""
        q = self.bottleneck.symbols(features)
        return tc.encode(q, self.table, channel_axis=1, meta=self._meta,
                         lanes=auto_lanes(q.size) if lanes is None else lanes)

    @torch.no_grad()
    def decode_features(self, blob: Any) -> torch.Tensor:
        """The tail's input from a frame of :meth:`encode` / :meth:`encode_features`.

        Raises :class:`taskcodec.TableMismatchError` for a frame of another codec and
        :class:`taskcodec.CorruptStreamError` for a damaged one."""
        header = tc.read_header(blob)
        q = tc.decode(blob, self.table)  # TableMismatchError on another codec's tables
        if header.channel_axis != 1 or q.ndim != 4:
            raise CorruptStreamError("not a SplitCodec frame (no [N, C, H, W] channel layout)")
        _, _, digest = quant.read_params_meta(header.meta, self.bottleneck.channels)
        if digest != self._meta[8:16]:
            raise tc.TableMismatchError("the frame was quantized with another codec's steps")
        return self.bottleneck.reconstruct(q)

    def compress(self, features: torch.Tensor) -> bytes:
        """:meth:`encode_features` under :class:`~taskcodec.nn.FeatureCodec`'s name, so code
        written for a feature codec (the pipeline's split mode) takes a SplitCodec as it is."""
        return self.encode_features(features)

    def decompress(self, blob: Any) -> torch.Tensor:
        """:meth:`decode_features` under :class:`~taskcodec.nn.FeatureCodec`'s name."""
        return self.decode_features(blob)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, *, lanes: Optional[int] = None) -> bytes:
        """Device side: images ``x [N, 3, H, W]`` -> one frame (head + encoder + coder)."""
        self.head.eval()
        return self.encode_features(self.head(x.to(self._head_device())), lanes=lanes)

    @torch.no_grad()
    def decode(self, blob: Any) -> torch.Tensor:
        """Edge side: a frame -> the tail's output."""
        self.tail.eval()
        feats = self.decode_features(blob)
        return self.tail(feats.to(next(self.tail.parameters(), feats).device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``tail(bottleneck(head(x)))`` without the coder (eval mode: equals decode(encode(x)))."""
        a = self.head(x.to(self._head_device()))
        out, _ = self.bottleneck(a.to(self.bottleneck.step.device))
        return self.tail(out.to(a.device))

    @torch.no_grad()
    def evaluate(self, images: Any, *, batch_size: int = 64) -> Dict[str, float]:
        """Label-free quality on ``images`` through the coder (one frame per batch):
        :func:`taskcodec.nn.distill.agreement` figures plus ``bytes_per_view``."""
        teach, student, nbytes = [], [], 0
        self.eval()
        for b in _distill._batches(images, batch_size):
            blob = self.encode(b)
            nbytes += len(blob)
            student.append(self.decode(blob).float().cpu())
            teach.append(self.tail(self.head(b.to(self._head_device()))).float().cpu())
        out = _distill.agreement(torch.cat(teach), torch.cat(student))
        out["bytes_per_view"] = nbytes / max(sum(t.shape[0] for t in teach), 1)
        return out

    # ------------------------------------------------------------------ persistence
    def to_bytes(self) -> bytes:
        """Bottleneck weights, integer tables and fingerprints as an ``.npz`` (no pickle); the
        head and tail are not included (a digest of their weights is)."""
        state = deployed_state(self.bottleneck)
        header = {"format": _SAVE_FORMAT, "version": _SAVE_VERSION, "at": self.at,
                  "channels": self.bottleneck.channels, "hidden": self.bottleneck.hidden,
                  "fingerprint": f"{self.fingerprint:016x}", "weights": _digest([state]),
                  "model": _digest([self.head.state_dict(), self.tail.state_dict()]),
                  "info": self.info}
        arrays = {f"w:{k}": v.detach().cpu().numpy() for k, v in state.items()}
        buf = io.BytesIO()
        np.savez(buf, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
                 table=np.frombuffer(self.table.to_bytes(), dtype=np.uint8), **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: Any, *, head: Optional[nn.Module] = None, tail: Optional[nn.Module] = None,
                   model: Optional[nn.Module] = None, check_model: bool = True,
                   source: str = "the data") -> "SplitCodec":
        """Read :meth:`to_bytes`' output around ``head`` and ``tail``, or around a whole
        ``model`` (cut where the codec was trained: ``at``). A damaged or foreign file raises
        :class:`taskcodec.TaskcodecError`; with ``check_model``, a head / tail other than the
        ones it was trained with raises :class:`taskcodec.ModelMismatch`."""
        try:
            with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as z:
                header = json.loads(bytes(z["header"]).decode())
                table = tc.CdfTable.from_bytes(bytes(z["table"]))
                state = {k[2:]: torch.from_numpy(np.array(z[k])) for k in z.files if k.startswith("w:")}
            fmt, version = header.get("format"), header.get("version")
        except TaskcodecError as e:
            raise TaskcodecError(f"{source} is not a saved SplitCodec: {e}") from e
        except (KeyError, ValueError, OSError, TypeError, AttributeError, EOFError, zipfile.BadZipFile) as e:
            raise TaskcodecError(f"{source} is not a saved SplitCodec: {e}") from e
        if fmt != _SAVE_FORMAT or version != _SAVE_VERSION:
            raise TaskcodecError(f"{source}: expected {_SAVE_FORMAT} v{_SAVE_VERSION}, found {fmt} v{version}")
        if header.get("fingerprint") != f"{table.fingerprint:016x}" or header.get("weights") != _digest([state]):
            raise CorruptStreamError(f"{source}: the stored tables or weights do not match their fingerprint")
        if model is not None:
            if head is not None or tail is not None:
                raise TaskcodecError("pass a model or a head and a tail, not both")
            head, tail = partition(model, header.get("at"))
        elif head is None or tail is None:
            raise TaskcodecError("pass the model (or its head and tail) the codec was trained for")
        if check_model and header.get("model") != _digest([head.state_dict(), tail.state_dict()]):
            raise ModelMismatch(f"{source} was trained with another head / tail (weights differ)")
        try:
            bn = SplitBottleneck(state["step"].numpy(), state["zero"].numpy(), hidden=int(header["hidden"]))
            missing, unexpected = bn.load_state_dict(state, strict=False)
        except (KeyError, RuntimeError, TypeError, ValueError) as e:
            raise TaskcodecError(f"{source} holds weights of another shape: {e}") from e
        if unexpected or [k for k in missing if k.split(".")[-1] not in CDF_BUFFERS]:
            raise TaskcodecError(f"{source}: weights missing {missing} / unexpected {unexpected}")
        return cls(head, tail, bn, table, at=header.get("at"), info=header.get("info"))

    def save(self, path: Union[str, Path]) -> None:
        """Write :meth:`to_bytes` to ``path``."""
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: Union[str, Path], *, head: Optional[nn.Module] = None,
             tail: Optional[nn.Module] = None, model: Optional[nn.Module] = None,
             check_model: bool = True) -> "SplitCodec":
        """Read a codec written by :meth:`save`, around the model's own ``head`` and ``tail``
        or the whole ``model`` (see :meth:`from_bytes`)."""
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise TaskcodecError(f"{path} cannot be read: {e}") from e
        return cls.from_bytes(data, head=head, tail=tail, model=model, check_model=check_model,
                              source=str(path))

    @staticmethod
    def available() -> List[str]:
        """Names of the models a trained codec ships for (:meth:`pretrained`)."""
        return sorted(p.stem for p in PRETRAINED_DIR.glob("*.npz"))

    @classmethod
    def pretrained(cls, name: str, *, model: Optional[nn.Module] = None) -> "SplitCodec":
        """The codec shipped for pretrained model ``name`` (:meth:`available`), around that
        model's ImageNet weights (:func:`taskcodec.nn.backbones.load_backbone`, offline), or
        around ``model`` when given (a copy already loaded: head and tail share its weights).

        Input: ``[N, 3, 224, 224]`` normalized as the model's own preprocessing
        (``taskcodec.zoo.models.load_model(name)[1]``). Raises :class:`taskcodec.TaskcodecError`
        for an unknown name, :class:`taskcodec.MissingWeightsError` when the model's weights are
        not installed, and :class:`taskcodec.ModelMismatch` when they differ from the weights
        the codec was trained for."""
        if name not in cls.available():
            raise TaskcodecError(f"no split codec ships for {name!r}; shipped: {cls.available()}")
        path = PRETRAINED_DIR / f"{name}.npz"
        return cls.from_bytes(path.read_bytes(), model=load_backbone(name) if model is None else model,
                              source=f"the shipped {path.name}")

    def __repr__(self) -> str:
        return (f"SplitCodec(at={self.at!r}, channels={self.bottleneck.channels}, "
                f"fingerprint={self.fingerprint:016x})")
