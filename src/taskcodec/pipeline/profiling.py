"""The device's compute profile: what each model's head, whole model and codec cost here.

The policy needs, per model, the device's time to preprocess a camera-sized photo and run
the head of every registered cut (``head_ms``) or the whole model (``full_ms``), and the time
to compress a cut's features (``codec_ms``). :func:`profile_device` measures them once at
start-up with :func:`taskcodec.split.profile` (through the runtime's ``profile``); a device
emulated ``slowdown`` times slower than this machine scales them.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Sequence

import numpy as np

__all__ = ["preprocess_ms", "profile_device", "codec_ms"]


def preprocess_ms(rt: Any, runs: int) -> float:
    """Median ms of preprocessing a camera-sized photo (a calibration photo, 500 x 741)."""
    from taskcodec.zoo.photos import load_photo

    photo = load_photo("motorcycle_left")
    times = []
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        rt.preprocess(photo)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def profile_device(rt: Any, runs: int, slowdown: float = 1.0) -> Dict[str, Any]:
    """``{"head_ms": {cut: ms}, "full_ms": ms}`` of runtime ``rt`` on this device, each
    including the preprocessing, times ``slowdown``; ``full_ms`` is None for a model whose
    registry entry says only its heads fit here."""
    prof = rt.profile(runs)  # tc.split.profile of the registered cuts on this device
    pre = preprocess_ms(rt, runs)
    return {  # cuts are named "features.<k>" (CNNs) or are block indices (transformers)
        "head_ms": {int(str(p.at).rsplit(".", 1)[-1]): (pre + p.head_ms) * slowdown
                    for p in prof},
        "full_ms": (pre + prof.full_ms) * slowdown if rt.spec.device_fits else None,
    }


def codec_ms(rt: Any, calibrations: Sequence[Any], slowdown: float = 1.0) -> float:
    """Median ms of compressing one head's features with the first few ``calibrations``
    (0 without any), times ``slowdown``."""
    import torch

    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    times = []
    for c in list(calibrations)[:3]:
        z = rt.head(x, c.at)
        t0 = time.perf_counter()
        c.codec.compress(z)
        times.append((time.perf_counter() - t0) * 1e3)
    return (float(np.median(times)) if times else 0.0) * slowdown
