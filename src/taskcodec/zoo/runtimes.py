"""The model registry and the model runtimes the edge and the device load.

:data:`REGISTRY` says which models exist, which tasks they serve, where they may be cut, at
which codec rates, and whether they fit on a device. :func:`load_runtime` builds one:

* ``mobilenet_v2`` — torchvision's MobileNetV2 with its real ImageNet weights (offline, see
  :func:`taskcodec.nn.weights.ensure_weights`); classification; cut after ``features.k``.
* ``scenes-blip`` — captioning and VQA: the small BLIP captioner and VQA model trained on the
  generated scenes (:mod:`taskcodec.zoo.vlm`, shipped weights), cut after block ``k`` of their
  shared vision model (:class:`taskcodec.zoo.scene_runtime.SceneBlipRuntime`); the device
  runs the head (``head_fits``), never the whole model. With ``TASKCODEC_BLIP_MODEL=<name or
  path>`` the real BLIP weights of that name load with ``from_pretrained`` (edge-only).

Codec calibrations (per cut and rate: the codec, its mean frame size and its top-1 agreement
with the full model on held-out photos) are computed by the edge at start-up
(:meth:`MobileNetRuntime.calibrate`) and fetched by devices from it.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from taskcodec.errors import BadInputError
from taskcodec.zoo.registry import REGISTRY, CodecCalibration, CutRuntime, ModelSpec

__all__ = [
    "ModelSpec",
    "REGISTRY",
    "CodecCalibration",
    "MobileNetRuntime",
    "load_runtime",
    "decode_feature",
]


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


class MobileNetRuntime(CutRuntime):
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

    def tail(self, z: Any, at: int) -> Any:
        """The tail of cut ``at``: the logits."""
        return self._tail(z, at)

    def full(self, x: Any) -> Any:
        import torch

        with torch.inference_mode():
            return self.model(x)

    def answer_batch(self, z: Any, at: int, task: str,
                     questions: Sequence[Optional[str]]) -> List[Dict[str, Any]]:
        """Split, batched: the tail of cut ``at`` on ``[N, C, H, W]`` decoded features (one
        per request), an answer per row (``questions`` unused: classification)."""
        self._check_task(task)
        return self.answers(self.tail(z, at))

    def run_batch(self, x: Any, task: str,
                  questions: Sequence[Optional[str]]) -> List[Dict[str, Any]]:
        """Edge-only, batched: the whole model on ``[N, 3, 224, 224]``, an answer per row."""
        self._check_task(task)
        return self.answers(self.full(x))

    @staticmethod
    def _check_task(task: str) -> None:
        if task != "classify":
            raise BadInputError(f"mobilenet_v2 does ['classify'], not {task!r}")

    def tail_ms(self, runs: int = 5) -> Dict[int, float]:
        """The tail of each registered cut, timed on this host (ms)."""
        return {int(str(p.at).rsplit(".", 1)[1]): p.tail_ms for p in self.profile(runs)}

    def answer(self, logits: Any) -> Dict[str, Any]:
        """The answer of the first row of ``logits``."""
        return self.answers(logits[:1])[0]

    def answers(self, logits: Any) -> List[Dict[str, Any]]:
        """Class, index and probability of every row of ``logits`` ``[N, 1000]``."""
        import torch

        p = torch.softmax(logits.float(), dim=1)
        top = p.argmax(dim=1).tolist()
        return [{"answer": self.categories[i], "class_index": i, "p": round(float(p[r, i]), 4)}
                for r, i in enumerate(top)]

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


def load_runtime(name: str) -> Any:
    """Build the runtime of registry model ``name``."""
    if name == "mobilenet_v2":
        return MobileNetRuntime()
    if name == "scenes-blip":
        from taskcodec.zoo.scene_runtime import SceneBlipRuntime

        return SceneBlipRuntime()
    raise BadInputError(f"unknown model {name!r}; known: {sorted(REGISTRY)}")
