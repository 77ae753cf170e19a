"""The reference device / edge / cloud pipeline (needs the ``pipeline`` extra).

* :mod:`~taskcodec.pipeline.cloud` — the planner service: request → validated HuggingGPT-style
  plan (OpenAI-compatible LLM, or an offline embedding matcher / rules that say what they are).
* :mod:`~taskcodec.pipeline.edge` — the edge server (FastAPI): split inference on taskcodec
  frames, full inference on JPEGs, health, metrics.
* :mod:`~taskcodec.pipeline.device` — the device client: heads + codec, the bandwidth policy
  (edge-only / device-only / split), fallback when the edge is gone.
* :mod:`~taskcodec.pipeline.link` — token-bucket link emulation on real sockets.
* :mod:`~taskcodec.pipeline.models` — the model registry and runtimes.
* :mod:`~taskcodec.pipeline.demo` — ``taskcodec demo``: all three tiers on loopback.

Submodules load on first use, so ``import taskcodec`` never imports torch or FastAPI.
"""

from __future__ import annotations

import importlib
from typing import Any

_SUBMODULES = ("cloud", "edge", "device", "link", "models", "demo", "procs")

__all__ = list(_SUBMODULES)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"taskcodec.pipeline.{name}")
    raise AttributeError(f"module 'taskcodec.pipeline' has no attribute {name!r}")
