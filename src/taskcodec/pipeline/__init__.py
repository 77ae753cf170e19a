"""The reference device / edge / cloud pipeline (needs the ``pipeline`` extra).

* :mod:`~taskcodec.pipeline.cloud` — the planner service: request → validated HuggingGPT-style
  plan (OpenAI-compatible LLM, or an offline embedding matcher / rules that say what they are).
* :mod:`~taskcodec.pipeline.edge` — the edge server (FastAPI): split inference on taskcodec
  frames, full inference on JPEGs, health, metrics.
* :mod:`~taskcodec.pipeline.device` — the device client: heads + codec, fallback when the edge
  is gone; :mod:`~taskcodec.pipeline.policy` — the bandwidth policy (edge-only / device-only /
  split) on :mod:`taskcodec.split`'s cost model; :mod:`~taskcodec.pipeline.measure` — link
  measurement; :mod:`~taskcodec.pipeline.profiling` — the device's compute times;
  :mod:`~taskcodec.pipeline.transport` — HTTP to the edge and the cloud, failures mapped to the
  error tree.
* :mod:`~taskcodec.pipeline.protocol` — the wire forms: media types, task names, the plan schema.
* :mod:`~taskcodec.pipeline.link` — token-bucket link emulation on real sockets.
* :mod:`~taskcodec.pipeline.procs` — start the tiers as processes on loopback and stop them.

The models the tiers load (registry, runtimes, calibrated split codecs) live in
:mod:`taskcodec.zoo`; ``taskcodec demo`` (all three tiers on loopback) is
:mod:`taskcodec.apps.pipeline_demo`.

Submodules load on first use, so ``import taskcodec`` never imports torch or FastAPI.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

_SUBMODULES = ("protocol", "cloud", "edge", "policy", "measure", "profiling", "transport", "device",
               "link", "procs")

__all__ = list(_SUBMODULES)


def __getattr__(name: str) -> Any:
    # Any submodule of this package loads on first access (not only those listed above).
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'taskcodec.pipeline' has no attribute {name!r}")
