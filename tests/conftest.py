"""With TASKCODEC_REQUIRE_DATA=1 (set by `make test` and `.ci/run`), or CI without it, the
session fails if any test skipped, except the GPU tests (marker ``gpu``, ``tests/gpu/``) and the
CPU-only ones (marker ``cpu_only``) that a usable CUDA device skips: every other skip means a
missing extra, data set or weight file that the run was meant to have."""

from __future__ import annotations

from pathlib import Path
from typing import List

import pytest
from ci_support import DATA_HINT, REQUIRE_DATA

_GPU_DIR = Path(__file__).resolve().parent / "gpu"
_BAD_SKIPS: List[str] = []


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "cpu_only: checks behaviour without a CUDA device; skipped where one is usable")


def _in_gpu_dir(node) -> bool:
    path = getattr(node, "path", None) or node.fspath  # .path: pytest >= 7
    try:
        Path(str(path)).resolve().relative_to(_GPU_DIR)
        return True
    except ValueError:
        return False


def _reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
        return reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not (REQUIRE_DATA and report.skipped) or hasattr(report, "wasxfail"):
        return
    allowed = (item.get_closest_marker("gpu") is not None
               or item.get_closest_marker("cpu_only") is not None
               or _in_gpu_dir(item))
    if not allowed:
        _BAD_SKIPS.append(f"{item.nodeid}: {_reason(report)}")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_DATA and report.skipped and not _in_gpu_dir(collector):
        _BAD_SKIPS.append(f"{report.nodeid} (whole module): {_reason(report)}")


def pytest_sessionfinish(session, exitstatus):
    if _BAD_SKIPS and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if not _BAD_SKIPS:
        return
    tr = terminalreporter
    tr.section("skipped tests that must run (TASKCODEC_REQUIRE_DATA / CI)", sep="=", red=True)
    for line in _BAD_SKIPS:
        tr.line(line, red=True)
    tr.line(f"{len(_BAD_SKIPS)} test(s) that need no GPU skipped, so this run fails: install "
            f"what they lack ({DATA_HINT} for data and weights, make venv for the extras), "
            "or set TASKCODEC_REQUIRE_DATA=0 to let them skip", red=True)
