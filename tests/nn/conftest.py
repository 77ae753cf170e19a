"""Narrow filters for warnings raised inside third-party libraries at import or call time."""

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        # compressai 1.2.8 calls torch.jit.script at import (torch >= 2.10 deprecates it).
        item.add_marker(pytest.mark.filterwarnings(
            "ignore:`torch.jit.script` is deprecated:FutureWarning"))
