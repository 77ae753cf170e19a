"""Tables and symbols shared by the codec API tests."""

from __future__ import annotations

import numpy as np
import pytest

import taskcodec as tc


@pytest.fixture(scope="module")
def table3() -> tc.CdfTable:
    pmf = np.array([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    return tc.CdfTable.from_pmf(pmf, [0, -2, 5], precision=8)


@pytest.fixture(scope="module")
def table1() -> tc.CdfTable:
    return tc.CdfTable.from_pmf(np.ones((1, 6)), [-3], precision=10)


@pytest.fixture(scope="module")
def symbols() -> np.ndarray:
    return (np.arange(2 * 3 * 4, dtype=np.int32).reshape(2, 3, 4) % 11) - 4
