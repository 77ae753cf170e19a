"""Skips that turn into failures under CI (``CI`` set): a missing extra or weight file must
not let CI pass by skipping the tests that need it."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def require(module: str):
    """The module, imported; without it the test skips, or fails under CI."""
    if IN_CI:
        return __import__(module)
    return pytest.importorskip(module)


def skip_unless_ci(reason: str) -> None:
    """Skips with ``reason``; under CI re-raises the exception being handled instead."""
    if IN_CI:
        raise
    pytest.skip(reason)
