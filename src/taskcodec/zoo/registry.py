"""The model registry (:data:`REGISTRY`) and the codec calibrations the edge offers
(:class:`CodecCalibration`); :mod:`taskcodec.zoo.runtimes` builds the runtimes."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any, Dict, Optional, Tuple

from taskcodec.errors import BadInputError

__all__ = ["ModelSpec", "REGISTRY", "CodecCalibration", "CutRuntime"]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One registry entry."""

    name: str
    tasks: Tuple[str, ...]
    description: str
    weights: str
    cut_points: Tuple[int, ...] = ()
    rates: Tuple[float, ...] = ()  # codec step as a multiple of each channel's std
    device_fits: bool = False  # the device can run the whole model (device-only)
    params_millions: float = 0.0
    head_fits: bool = False  # the device can run the heads of the cuts (split), if not all

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
    "scenes-blip": ModelSpec(
        name="scenes-blip",
        tasks=("caption", "vqa"),
        description="captioning and visual question answering on generated scenes, small BLIP "
        "trained here (taskcodec.zoo.vlm); real BLIP weights if TASKCODEC_BLIP_MODEL names them",
        weights="shipped, trained on generated scenes (scripts/train_scene_models.py)",
        cut_points=(1, 2, 4),
        rates=(0.5, 1.0, 2.0),
        device_fits=False,  # stands for the large VLM a device cannot hold; its head fits
        params_millions=3.9,
        head_fits=True,
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


class CutRuntime:
    """What the runtimes share: ``parts`` (cut -> ``(head, tail)`` from
    :func:`taskcodec.split.partition`), run without autograd; an unknown cut is a
    :class:`~taskcodec.BadInputError`."""

    spec: ModelSpec
    parts: Dict[int, Any]

    def _check_cut(self, at: int) -> None:
        if at not in self.parts:
            raise BadInputError(f"{self.spec.name} has no cut {at}; cuts: {sorted(self.parts)}")

    def head(self, x: Any, at: int) -> Any:
        """The head of cut ``at`` on the preprocessed input ``x``."""
        import torch

        self._check_cut(at)
        with torch.inference_mode():
            return self.parts[at][0](x)

    def _tail(self, z: Any, at: int) -> Any:
        import torch

        self._check_cut(at)
        with torch.inference_mode():
            return self.parts[at][1](z)
