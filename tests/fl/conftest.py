"""Fixtures shared by the Flower tests."""

from __future__ import annotations

import pytest
from ci_support import require


@pytest.fixture
def flower_run_identity():
    """Flower messages are made inside a ServerApp, which sets the run's identity; tests that
    build messages outside one set it themselves, and put the old one back afterwards."""
    task_identity = require("flwr.supercore.task_identity")
    ident = task_identity.TaskIdentity
    saved = ident._run_id, ident._node_id, ident._task_id
    ident.run_id, ident.node_id, ident.task_id = 1, 0, 1
    yield
    ident._run_id, ident._node_id, ident._task_id = saved
