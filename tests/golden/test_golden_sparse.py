"""Golden sparse-update frames: decoded to the pinned arrays, re-encoded to the pinned bytes."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate_sparse import CASES, GOLDEN_DIR, encode_case  # noqa: E402

from taskcodec.fl.frames import decompress  # noqa: E402


def _split(z):
    r1 = {k[3:]: z[k] for k in z.files if k.startswith("r1/")}
    r2 = {k[3:]: z[k] for k in z.files if k.startswith("r2/")}
    return r1, r2


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_sparse_frame(name):
    with np.load(GOLDEN_DIR / f"{name}.input.npz") as z:
        r1, r2 = _split(z)
    with np.load(GOLDEN_DIR / f"{name}.dense.npz") as z:
        d1, d2 = _split(z)
    frames = [(GOLDEN_DIR / f"{name}.frame").read_bytes(), (GOLDEN_DIR / f"{name}.r2.frame").read_bytes()]
    for frame, dense in zip(frames, (d1, d2)):
        out = decompress(frame)
        assert list(out) == list(dense)
        for k in dense:
            np.testing.assert_array_equal(out[k], dense[k])
    f1, f2 = encode_case(name, r1, r2)
    assert f1 == frames[0] and f2 == frames[1], "the encoder no longer writes the pinned bytes"
