"""Where taskcodec keeps data it provisions itself (data sets, the photo pool): one folder."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_cache_dir"]


def data_cache_dir() -> Path:
    """The folder ``scripts/setup-data.sh`` and ``taskcodec photos fetch`` put data into:
    ``$TASKCODEC_DATA_DIR``, else ``$XDG_CACHE_HOME/taskcodec``, else ``~/.cache/taskcodec``."""
    if os.environ.get("TASKCODEC_DATA_DIR"):
        return Path(os.environ["TASKCODEC_DATA_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(cache).expanduser() / "taskcodec"
