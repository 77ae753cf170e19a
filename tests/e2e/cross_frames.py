"""Cross-platform frames: the same seeded inputs must give the same bytes on every machine.

    python cross_frames.py make DIR    # encode the cases here, write DIR/<case>.tcf
    python cross_frames.py check DIR   # frames made elsewhere: decode them here to the seeded
                                       # inputs, and encode the inputs here to the same bytes

Used by scripts/wheel-aarch64.sh between x86_64 and aarch64 (under qemu), in both directions.
The inputs come from numpy's PCG64 generator, whose streams are the same on every platform.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import taskcodec as tc

# name: (seed, shape, channel axis or "index" or None, lanes, chunk, precision, dtype, escape rate, checksum)
CASES = {
    "laplace_c16": (1, (2, 16, 24, 24), 1, 32, 4096, 14, "int32", 0.0, True),
    "escapes_c8": (2, (3, 8, 100), 1, 32, 777, 14, "int32", 0.02, True),
    "extremes_i64": (3, (5, 4, 50), 1, 64, 300, 12, "int64", 0.05, True),
    "lanes1_i8": (4, (7, 3, 30), 1, 1, 100, 10, "int8", 0.01, False),
    "lanes256_u16": (5, (2, 6, 900), 1, 256, 5000, 16, "uint16", 0.0, True),
    "last_axis": (6, (40, 12), -1, 8, 99, 13, "int16", 0.01, True),
    "index_rows": (7, (6, 500), "index", 16, 1000, 15, "int32", 0.01, True),
    "single_row": (8, (3000,), None, 32, 1024, 11, "uint8", 0.0, True),
}


def build(name):
    seed, shape, axis, lanes, chunk, precision, dtype, esc, checksum = CASES[name]
    rng = np.random.default_rng(seed)
    if axis is None:
        rows = 1
    elif axis == "index":
        rows = 9
    else:
        rows = shape[axis]
    k = 40
    offsets = rng.integers(-25, -5, size=rows).astype(np.int32)
    scale = rng.uniform(0.5, 6.0, size=(rows, 1))
    grid = np.arange(k)[None, :] + offsets[:, None]
    table = tc.CdfTable.from_pmf(np.exp(-np.abs(grid) / scale), offsets, precision=precision)
    x = np.round(rng.laplace(0.0, 3.0, size=shape)).astype(np.int64)
    n_esc = int(esc * x.size)
    if n_esc:
        flat = x.reshape(-1)
        pos = rng.choice(x.size, n_esc, replace=False)
        flat[pos] = rng.integers(-(2**30), 2**30, size=n_esc)
        if dtype == "int64":
            flat[pos[0]], flat[pos[-1]] = 2**31 - 1, -(2**31)
    info = np.iinfo(dtype)
    sym = np.clip(x, info.min, info.max).astype(dtype)
    index = rng.integers(0, rows, size=shape).astype(np.int32) if axis == "index" else None
    kwargs = dict(lanes=lanes, chunk_size=chunk, checksum=checksum, meta=name.encode())
    if axis not in (None, "index"):
        kwargs["channel_axis"] = axis
    blob = tc.encode(sym, table, index, **kwargs)
    return table, sym, index, blob


def main(argv):
    if len(argv) != 2 or argv[0] not in ("make", "check"):
        print(__doc__)
        return 2
    folder = Path(argv[1])
    if argv[0] == "make":
        folder.mkdir(parents=True, exist_ok=True)
        for name in CASES:
            (folder / f"{name}.tcf").write_bytes(build(name)[3])
        print(f"wrote {len(CASES)} frames to {folder}")
        return 0
    failures = []
    for name in CASES:
        theirs = (folder / f"{name}.tcf").read_bytes()
        table, sym, index, ours = build(name)
        if ours != theirs:
            failures.append(f"{name}: encoded here to {len(ours)} bytes that differ from the other machine's")
        got = tc.decode(theirs, table, index)
        if not np.array_equal(got, sym.astype(np.int32)):
            failures.append(f"{name}: the other machine's frame decodes to other symbols here")
    if failures:
        print("\n".join(failures))
        return 1
    print(f"{len(CASES)} frames from {folder}: same bytes and same symbols on this machine")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
