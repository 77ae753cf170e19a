"""Where the Fashion-MNIST loader looks, and scripts/setup-data.sh's checks (on tiny fake IDX
files: the real data set is exercised by the training and benchmark smoke tests)."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from ci_support import missing, require

require("torch")  # taskcodec.nn imports it

from taskcodec.nn import datasets  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte")


def _write_idx(path: Path, array: np.ndarray) -> None:
    head = b"\0\0\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + array.astype(np.uint8).tobytes())


def _fake(folder: Path, n: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for stem in STEMS:
        shape = (n, 28, 28) if "images" in stem else (n,)
        _write_idx(folder / f"{stem}.gz", np.arange(np.prod(shape)).reshape(shape) % 10)
    return folder


@pytest.fixture
def env(monkeypatch, tmp_path):
    for var in ("TASKCODEC_FASHION_MNIST", "TASKCODEC_DATA_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def test_override_is_the_only_folder_searched(env, tmp_path):
    env.setenv("TASKCODEC_FASHION_MNIST", str(_fake(tmp_path / "mine", n=4)))
    assert datasets.fashion_mnist_dirs() == [tmp_path / "mine"]
    x, y = datasets.load_fashion_mnist("test")
    assert x.shape == (4, 28, 28) and y.dtype == np.int64
    env.setenv("TASKCODEC_FASHION_MNIST", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist.*make data"):
        datasets.load_fashion_mnist("train")


def test_cache_folder_of_setup_data(env, tmp_path):
    assert datasets.data_cache_dir() == tmp_path / "home" / ".cache" / "taskcodec"
    env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datasets.data_cache_dir() == tmp_path / "xdg" / "taskcodec"
    env.setenv("TASKCODEC_DATA_DIR", str(tmp_path / "data"))
    assert datasets.fashion_mnist_dirs()[1] == tmp_path / "data" / "fashion-mnist"
    _fake(tmp_path / "data" / "fashion-mnist")
    if not any(datasets._find(Path(datasets.FASHION_MNIST_DIRS[0]), s) for s in STEMS):
        assert datasets.find_fashion_mnist() == tmp_path / "data" / "fashion-mnist"
    assert datasets.find_fashion_mnist(tmp_path / "data" / "fashion-mnist").is_dir()


def test_torchvision_layout_and_missing_split(tmp_path):
    raw = _fake(tmp_path / "tv" / "FashionMNIST" / "raw")
    assert datasets.find_fashion_mnist(tmp_path / "tv") == raw
    assert len(datasets.load_fashion_mnist("train", tmp_path / "tv")[0]) == 3
    (raw / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="IDX files not found"):
        datasets.find_fashion_mnist(tmp_path / "tv")


def test_setup_data_checks_an_override_and_installs_nothing(tmp_path):
    script = ROOT / "scripts" / "setup-data.sh"
    if not script.is_file():
        missing("scripts/setup-data.sh is not next to the tests", "run them from a source checkout")
    env = dict(os.environ, TASKCODEC_FASHION_MNIST=str(_fake(tmp_path / "fm")),
               TASKCODEC_DATA_NO_ROOT="1", TASKCODEC_DATA_DIR=str(tmp_path / "cache"))
    ok = subprocess.run(["bash", str(script), "fashion-mnist"], env=env, capture_output=True,
                        text=True, check=False)
    assert ok.returncode == 0 and ok.stdout == "" and ok.stderr == ""  # quiet when present
    env["TASKCODEC_FASHION_MNIST"] = str(tmp_path / "empty")
    bad = subprocess.run(["bash", str(script), "fashion-mnist"], env=env, capture_output=True,
                         text=True, check=False)
    assert bad.returncode != 0 and "TASKCODEC_FASHION_MNIST" in bad.stderr
    assert not (tmp_path / "cache").exists()
