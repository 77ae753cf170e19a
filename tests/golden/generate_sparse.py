"""Golden sparse-update frames (kind 2, format version 1, docs/format.md section 21).

Each case compresses a fixed input (stored as ``<name>.input.npz``) with a fixed
:class:`taskcodec.fl.TopKCompressor` configuration. Pinned per case under ``sparse_v1/``:

- ``<name>.frame``      the exact bytes ``compress`` wrote (two rounds, error feedback on:
  ``<name>.frame`` is round 1, ``<name>.r2.frame`` round 2);
- ``<name>.dense.npz``  what each frame decompresses to.

A later build must decode the frames to the same arrays and re-encode the inputs to the same
bytes. Regenerate only on purpose: ``python tests/golden/generate_sparse.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

GOLDEN_DIR = Path(__file__).resolve().parent / "sparse_v1"

# name -> (compressor arguments, tensor shapes)
CASES = {
    "int8_gaps": (dict(ratio=0.01, values="int8"), {"w": (200, 50), "b": (50,)}),
    "float16_bitmap": (dict(ratio=0.3, values="float16"), {"w": (40, 10)}),
    "float32": (dict(ratio=0.05, values="float32"), {"x": (1000,)}),
    "sign_blocks": (dict(ratio=0.02, values="sign", block_size=16), {"w": (3000,), "v": (7,)}),
    "qsgd_seeded": (dict(ratio=0.05, values="qsgd", levels=4, seed=99), {"w": (64, 64)}),
    "no_checksum": (dict(ratio=0.1, values="int8", checksum=False), {"w": (300,)}),
}


def make_inputs(name: str):
    _, shapes = CASES[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    r1 = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    r2 = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    return r1, r2


def encode_case(name: str, r1, r2):
    from taskcodec import fl

    args, _ = CASES[name]
    comp = fl.TopKCompressor(**args)
    return comp.compress(r1), comp.compress(r2)


def main() -> int:
    from taskcodec.fl.frames import decompress

    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for name in CASES:
        r1, r2 = make_inputs(name)
        np.savez(GOLDEN_DIR / f"{name}.input.npz", **{f"r1/{k}": v for k, v in r1.items()},
                 **{f"r2/{k}": v for k, v in r2.items()})
        f1, f2 = encode_case(name, r1, r2)
        (GOLDEN_DIR / f"{name}.frame").write_bytes(f1)
        (GOLDEN_DIR / f"{name}.r2.frame").write_bytes(f2)
        d1, d2 = decompress(f1), decompress(f2)
        np.savez(GOLDEN_DIR / f"{name}.dense.npz", **{f"r1/{k}": v for k, v in d1.items()},
                 **{f"r2/{k}": v for k, v in d2.items()})
        manifest[name] = {"compressor": CASES[name][0], "frame_length": [len(f1), len(f2)]}
    (GOLDEN_DIR / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
