#!/usr/bin/env python
"""CPU entropy-coder benchmark: taskcodec vs constriction vs CompressAI, in one run.

Every coder codes the same seeded symbols, laid out ``[N, 64, 16, 16]`` with one
table (model) per channel, and must give them back exactly. For each data case and
coder the benchmark reports encode and decode throughput (Msym/s, end to end, median
of ``--repeats`` runs after one warm-up), compressed bytes, bits per symbol, the
overhead against the ideal size ``sum(-log2 p(symbol))`` under the float pmf, and the
peak extra resident memory of coding. Each coder/case runs in a fresh process.

What "end to end" means for each coder (timed with ``time.perf_counter``):

* taskcodec: ``tc.encode(symbols, table, channel_axis=1, threads=t)`` -> ``bytes`` (a
  whole frame: header, chunk directory, payload, CRC32C trailer) and ``tc.decode`` back
  to an ``int32`` array of the input's shape. Tables (``CdfTable.from_pmf``) are built
  once per process, outside the timing.
* constriction: ``constriction.stream.stack.AnsCoder`` with one
  ``constriction.stream.model.Categorical(pmf[c], perfect=False)`` per channel (built
  once, outside the timing). Encoding gathers each channel's symbols, subtracts the
  channel's offset and calls ``encode_reverse`` for channels C-1 .. 0, so decoding pops
  channels 0 .. C-1 in order; the compressed words are returned as ``bytes``. Decoding
  calls ``decode(model_c, n)`` per channel and scatters into an ``[N, C, H, W]`` array.
  No header: the decoder must know the shape.
* CompressAI: ``compressai.ans.RansEncoder.encode_with_indexes(symbols, indexes, cdfs,
  cdf_lengths, offsets)`` and ``RansDecoder.decode_with_indexes``, with quantized CDFs
  made as ``compressai.entropy_models.EntropyModel`` makes them
  (``compressai._CXX.pmf_to_quantized_cdf(pmf + [tail_mass], 16)``; built once). The
  coder takes Python lists, so the timing includes building the per-symbol index array
  and every ``.tolist()`` (symbols, indexes, CDFs, lengths, offsets), as
  ``EntropyModel.compress``/``decompress`` do, and the conversion of the decoded list
  back to an array. The C++ call alone is timed too and reported as ``*_core``.

constriction and CompressAI code on one thread; taskcodec runs at ``threads=1`` and
``threads=2`` (chunks coded in parallel).

Run:  python bench/coders.py [--symbols 10000000] [--repeats 5] [--cases ...] [--out DIR]
      python bench/coders.py --quick          # 100k symbols, 1 repeat: smoke run
Writes DIR/coders.json (all numbers, machine, timestamp) and DIR/coders.png.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import math
import statistics
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine, machine_summary  # noqa: E402

SEED = 20240607
CHANNELS = 64
SPATIAL = (16, 16)
DEFAULT_SYMBOLS = 10_000_000
QUICK_SYMBOLS = 100_000
GEN_BLOCK = 1 << 20  # symbols drawn per rng call while generating data

# name -> distribution of every channel: a continuous law with a per-channel scale drawn
# uniformly from `scale`, rounded to the nearest integer and clipped to [lo, hi].
CASES: Dict[str, Dict[str, Any]] = {
    "laplace64": dict(
        law="laplace",
        center=0.0,
        lo=-32,
        hi=32,
        scale=(2.0, 5.0),
        description="rounded Laplace(0, b), b ~ U(2, 5) per channel, clipped to [-32, 32] (K = 65)",
    ),
    "low_entropy": dict(
        law="laplace",
        center=0.0,
        lo=-32,
        hi=32,
        scale=(0.25, 0.35),
        description="rounded Laplace(0, b), b ~ U(0.25, 0.35) per channel, clipped to [-32, 32] "
        "(K = 65, about 1 bit/symbol)",
    ),
    "alphabet256": dict(
        law="gaussian",
        center=128.0,
        lo=0,
        hi=255,
        scale=(20.0, 40.0),
        description="rounded Gaussian(128, s), s ~ U(20, 40) per channel, clipped to [0, 255] "
        "(K = 256)",
    ),
}

# The coder configurations compared on every case, in display order.
CONFIGS: List[Dict[str, Any]] = [
    dict(label="taskcodec p14 t1", coder="taskcodec", precision=14, threads=1),
    dict(label="taskcodec p14 t1 out=", coder="taskcodec", precision=14, threads=1, reuse_out=True),
    dict(label="taskcodec p14 t2", coder="taskcodec", precision=14, threads=2),
    dict(label="taskcodec p16 t1", coder="taskcodec", precision=16, threads=1),
    dict(label="constriction", coder="constriction", precision=24, threads=1),
    dict(label="compressai", coder="compressai", precision=16, threads=1),
]
CODER_NAMES = ("taskcodec", "constriction", "compressai")

TIMING_METHOD = (
    "time.perf_counter around one end-to-end call: encode = integer ndarray [N, C, H, W] "
    "in, bytes out; decode = bytes in, int32 ndarray [N, C, H, W] out. One warm-up run, "
    "then the median (and min) of --repeats runs. Tables/models are built once per process "
    "outside the timing, except CompressAI's per-call Python list conversions (symbols, "
    "indexes, CDFs, lengths, offsets), which are timed because that is how its "
    "EntropyModel calls the coder; its C++ call alone is reported as encode/decode_core. "
    "Every decoded array is compared with the input outside the timing. The row "
    "'taskcodec ... out=' decodes into one output array reused between runs "
    "(tc.decode(..., out=buf)), so it leaves out allocating and first-touching the 40 MB "
    "output, which the other rows (and the other coders, which always allocate) include."
)
MEMORY_METHOD = (
    "Each coder/case runs in a fresh process (multiprocessing 'spawn'). After the symbols "
    "are loaded and the tables/models built, the kernel's peak-RSS counter is reset "
    "(writing '5' to /proc/self/clear_refs) and VmRSS is read from /proc/self/status; after "
    "the warm-up and all timed runs, VmHWM (peak RSS) is read. Reported: VmHWM minus that "
    "VmRSS, the peak extra resident memory of coding (compressed bytes, decoded array, "
    "coder working memory, Python lists for CompressAI). Where the counter cannot be reset, "
    "VmHWM covers the loading too and the result says so (memory_method)."
)
SIZE_METHOD = (
    "bytes = everything a receiver needs besides the tables: taskcodec, the whole frame "
    "(header with shape, chunk directory, payload, CRC32C trailer); constriction, the "
    "compressed 32-bit words (no header); CompressAI, its string (no header). ideal bits = "
    "sum over symbols of -log2 p(symbol) under the normalized float pmf; overhead % = "
    "(8 * bytes - ideal) / ideal * 100. table bits = the cost of the symbols under the "
    "coder's integer tables (taskcodec: CdfTable.cost_bits; CompressAI: its quantized "
    "CDFs), which separates table quantization from coder/framing overhead."
)


# ---------------------------------------------------------------------------- data
def _law_cdf_sf(law: str, center: float, scale: np.ndarray) -> Tuple[Callable, Callable]:
    """CDF and survival function of the continuous law, per channel (scale [C, 1])."""
    if law == "laplace":

        def cdf(t: np.ndarray) -> np.ndarray:
            z = (t - center) / scale
            return np.where(
                z < 0, 0.5 * np.exp(np.minimum(z, 0)), 1 - 0.5 * np.exp(-np.maximum(z, 0))
            )

        def sf(t: np.ndarray) -> np.ndarray:
            z = (t - center) / scale
            return np.where(
                z > 0, 0.5 * np.exp(-np.maximum(z, 0)), 1 - 0.5 * np.exp(np.minimum(z, 0))
            )

        return cdf, sf
    if law == "gaussian":
        erfc = np.frompyfunc(math.erfc, 1, 1)

        def cdf(t: np.ndarray) -> np.ndarray:
            return 0.5 * erfc(-(t - center) / (scale * math.sqrt(2))).astype(np.float64)

        def sf(t: np.ndarray) -> np.ndarray:
            return 0.5 * erfc((t - center) / (scale * math.sqrt(2))).astype(np.float64)

        return cdf, sf
    raise ValueError(f"unknown law {law!r}")


def case_pmf(spec: Dict[str, Any], scales: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Exact pmf [C, K] of the rounded, clipped law, and the offsets [C] (value of bin 0)."""
    lo, hi = int(spec["lo"]), int(spec["hi"])
    k = np.arange(lo, hi + 1, dtype=np.float64)[None, :]
    cdf, sf = _law_cdf_sf(spec["law"], float(spec["center"]), scales[:, None])
    # Bin k holds [k - 0.5, k + 0.5); differences of the survival function above the
    # center avoid cancellation in the far tail. The end bins take the clipped tails.
    upper = k >= spec["center"]
    pmf = np.where(upper, sf(k - 0.5) - sf(k + 0.5), cdf(k + 0.5) - cdf(k - 0.5))
    pmf[:, 0] = cdf(k[:, :1] + 0.5)[:, 0]
    pmf[:, -1] = sf(k[:, -1:] - 0.5)[:, 0]
    pmf = np.maximum(pmf, 0.0)
    offsets = np.full(scales.shape[0], lo, dtype=np.int32)
    return pmf, offsets


def make_case(name: str, num_symbols: int) -> Dict[str, Any]:
    """Seeded symbols [N, 64, 16, 16] (int32), the exact pmf, offsets and ideal bits."""
    spec = CASES[name]
    index = list(CASES).index(name)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([SEED, index])))
    per_item = CHANNELS * SPATIAL[0] * SPATIAL[1]
    n = max(1, int(round(num_symbols / per_item)))
    shape = (n, CHANNELS) + SPATIAL
    scales = rng.uniform(*spec["scale"], size=CHANNELS)
    x = np.empty(shape, dtype=np.int32)
    block = max(1, GEN_BLOCK // per_item)
    draw = rng.laplace if spec["law"] == "laplace" else rng.normal
    for i in range(0, n, block):
        m = min(block, n - i)
        v = draw(spec["center"], scales[None, :, None, None], size=(m, CHANNELS) + SPATIAL)
        np.clip(np.rint(v), spec["lo"], spec["hi"], out=v)
        x[i : i + m] = v
    pmf, offsets = case_pmf(spec, scales)

    # Ideal size under the float pmf, and the empirical entropy of the sample (the best
    # any static per-channel code could do with tables fitted to this very sample).
    p = pmf / pmf.sum(axis=1, keepdims=True)
    K = pmf.shape[1]
    counts = np.zeros((CHANNELS, K), dtype=np.int64)
    xc = np.moveaxis(x, 1, 0)
    for c in range(CHANNELS):
        counts[c] = np.bincount((xc[c] - offsets[c]).ravel(), minlength=K)
    with np.errstate(divide="ignore"):
        logp = np.log2(p)
        ideal = float(-(counts * np.where(counts > 0, logp, 0.0)).sum())
        q = counts / counts.sum(axis=1, keepdims=True)
        empirical = float(
            -(counts * np.where(counts > 0, np.log2(np.where(q > 0, q, 1)), 0.0)).sum()
        )
    return dict(
        name=name,
        description=spec["description"],
        symbols=x,
        pmf=pmf,
        offsets=offsets,
        scales=scales,
        shape=list(shape),
        num_symbols=int(x.size),
        alphabet=K,
        ideal_bits=ideal,
        ideal_bits_per_symbol=ideal / x.size,
        empirical_entropy_bits=empirical,
        empirical_bits_per_symbol=empirical / x.size,
    )


# ---------------------------------------------------------------------------- coders
class _Coder:
    """encode() -> bytes from self.x; decode(bytes) -> int32 array of x's shape."""

    def encode(self) -> bytes:
        raise NotImplementedError

    def decode(self, blob: bytes) -> np.ndarray:
        raise NotImplementedError

    def extras(self, blob: bytes) -> Dict[str, Any]:
        return {}

    def core_times(self, blob: bytes, repeats: int) -> Dict[str, Any]:
        return {}


class _Taskcodec(_Coder):
    def __init__(
        self,
        x: np.ndarray,
        pmf: np.ndarray,
        offsets: np.ndarray,
        precision: int,
        threads: int,
        reuse_out: bool = False,
    ):
        import taskcodec as tc

        self.tc, self.x, self.threads = tc, x, threads
        self.table = tc.CdfTable.from_pmf(pmf, offsets, precision=precision)
        self.out = np.empty(x.shape, dtype=np.int32) if reuse_out else None

    def encode(self) -> bytes:
        return self.tc.encode(self.x, self.table, channel_axis=1, threads=self.threads)

    def decode(self, blob: bytes) -> np.ndarray:
        return self.tc.decode(blob, self.table, threads=self.threads, out=self.out)

    def extras(self, blob: bytes) -> Dict[str, Any]:
        h = self.tc.read_header(blob)
        return dict(
            table_bits=self.table.cost_bits(self.x, channel_axis=1),
            lanes=h.lanes,
            chunk_size=h.chunk_size,
            num_chunks=h.num_chunks,
            header_bytes=h.header_length,
            payload_bytes=h.payload_length,
            checksum=h.checksum,
        )


class _Constriction(_Coder):
    def __init__(self, x: np.ndarray, pmf: np.ndarray, offsets: np.ndarray, **_: Any):
        import constriction

        self.x = np.ascontiguousarray(x, dtype=np.int32)
        self.offsets = [np.int32(o) for o in offsets]
        self.AnsCoder = constriction.stream.stack.AnsCoder
        Categorical = constriction.stream.model.Categorical
        self.models = [
            Categorical(np.asarray(pmf[c], dtype=np.float64), perfect=False)
            for c in range(pmf.shape[0])
        ]

    def encode(self) -> bytes:
        coder = self.AnsCoder()
        xc = np.moveaxis(self.x, 1, 0)  # view [C, N, H, W]
        for c in reversed(range(xc.shape[0])):  # stack: last encoded is decoded first
            sym = (xc[c] - self.offsets[c]).ravel()  # a new int32 array, never a view of x
            coder.encode_reverse(sym, self.models[c])
        return coder.get_compressed().tobytes()

    def decode(self, blob: bytes) -> np.ndarray:
        coder = self.AnsCoder(np.frombuffer(blob, dtype=np.uint32))
        out = np.empty(self.x.shape, dtype=np.int32)
        oc = np.moveaxis(out, 1, 0)
        per_channel = oc[0].size
        for c in range(oc.shape[0]):
            v = coder.decode(self.models[c], per_channel)
            v += self.offsets[c]
            oc[c] = v.reshape(oc[c].shape)
        return out


class _CompressAI(_Coder):
    def __init__(
        self, x: np.ndarray, pmf: np.ndarray, offsets: np.ndarray, precision: int = 16, **_: Any
    ):
        with warnings.catch_warnings():  # compressai imports torch, which may warn
            warnings.simplefilter("ignore")
            import compressai.ans as ans
            from compressai._CXX import pmf_to_quantized_cdf

        self.x = np.ascontiguousarray(x, dtype=np.int32)
        C, K = pmf.shape
        # As compressai.entropy_models.EntropyModel._pmf_to_cdf: pmf bins then the tail
        # mass (the escape bin), quantized by the C++ helper; cdf_length = K + 2.
        cdfs = np.zeros((C, K + 2), dtype=np.int32)
        for c in range(C):
            row = [float(v) for v in pmf[c]]
            tail = max(0.0, 1.0 - sum(row))
            q = pmf_to_quantized_cdf(row + [tail], precision)
            cdfs[c, : len(q)] = q
        self.cdfs = cdfs
        self.cdf_lengths = np.full(C, K + 2, dtype=np.int32)
        self.offsets = np.asarray(offsets, dtype=np.int32)
        self.precision = precision
        shape = [1] * self.x.ndim
        shape[1] = C
        self.channel_ids = np.arange(C, dtype=np.int32).reshape(shape)
        self.encoder, self.decoder = ans.RansEncoder(), ans.RansDecoder()

    def _indexes(self) -> List[int]:
        return np.broadcast_to(self.channel_ids, self.x.shape).ravel().tolist()

    def encode(self) -> bytes:
        return self.encoder.encode_with_indexes(
            self.x.ravel().tolist(),
            self._indexes(),
            self.cdfs.tolist(),
            self.cdf_lengths.tolist(),
            self.offsets.tolist(),
        )

    def decode(self, blob: bytes) -> np.ndarray:
        values = self.decoder.decode_with_indexes(
            blob,
            self._indexes(),
            self.cdfs.tolist(),
            self.cdf_lengths.tolist(),
            self.offsets.tolist(),
        )
        return np.asarray(values, dtype=np.int32).reshape(self.x.shape)

    def extras(self, blob: bytes) -> Dict[str, Any]:
        freqs = np.diff(self.cdfs.astype(np.int64), axis=1)[:, : self.cdfs.shape[1] - 2]
        logq = np.log2(np.maximum(freqs, 1)) - self.precision
        xc = np.moveaxis(self.x, 1, 0)
        bits = 0.0
        for c in range(xc.shape[0]):
            local = (xc[c] - self.offsets[c]).ravel()
            bits -= float(np.bincount(local, minlength=freqs.shape[1]) @ logq[c])
        return dict(table_bits=bits)

    def core_times(self, blob: bytes, repeats: int) -> Dict[str, Any]:
        """The C++ calls alone, with every list prepared beforehand."""
        args = (
            self._indexes(),
            self.cdfs.tolist(),
            self.cdf_lengths.tolist(),
            self.offsets.tolist(),
        )
        symbols = self.x.ravel().tolist()
        enc, dec = [], []
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            self.encoder.encode_with_indexes(symbols, *args)
            t1 = time.perf_counter()
            self.decoder.decode_with_indexes(blob, *args)
            t2 = time.perf_counter()
            enc.append(t1 - t0)
            dec.append(t2 - t1)
        return dict(encode_core_s=enc, decode_core_s=dec)


def _make_coder(
    config: Dict[str, Any], x: np.ndarray, pmf: np.ndarray, offsets: np.ndarray
) -> _Coder:
    name = config["coder"]
    if name == "taskcodec":
        return _Taskcodec(
            x, pmf, offsets, precision=config["precision"], threads=config["threads"],
            reuse_out=config.get("reuse_out", False),
        )
    if name == "constriction":
        return _Constriction(x, pmf, offsets)
    if name == "compressai":
        return _CompressAI(x, pmf, offsets, precision=config["precision"])
    raise ValueError(f"unknown coder {name!r}")


# ---------------------------------------------------------------------------- worker
def _proc_status_kib(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _arrays_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Exact comparison in slices (no full-size temporary to inflate the peak RSS)."""
    if a.shape != b.shape:
        return False
    fa, fb = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    step = max(1, (1 << 16) // max(1, fa.shape[1]))
    return all(
        np.array_equal(fa[i : i + step], fb[i : i + step]) for i in range(0, fa.shape[0], step)
    )


def run_job(job: Dict[str, Any]) -> Dict[str, Any]:
    """Runs in a fresh (spawned) process: load one case, time one coder config."""
    config, case_dir = job["config"], Path(job["case_dir"])
    x = np.load(case_dir / "symbols.npy")
    pmf = np.load(case_dir / "pmf.npy")
    offsets = np.load(case_dir / "offsets.npy")
    coder = _make_coder(config, x, pmf, offsets)
    gc.collect()

    reset = _reset_peak_rss()
    rss0 = _proc_status_kib("VmRSS")
    enc_s: List[float] = []
    dec_s: List[float] = []
    equal = True
    blob: Optional[bytes] = None
    total = job["warmup"] + job["repeats"]
    runs: Any = range(total)
    if job.get("progress"):
        from tqdm import tqdm

        runs = tqdm(
            runs, desc=f"  {job['case']}: {config['label']}", position=1, leave=False, disable=None
        )
    for i in runs:
        blob = out = None
        t0 = time.perf_counter()
        blob = coder.encode()
        t1 = time.perf_counter()
        out = coder.decode(blob)
        t2 = time.perf_counter()
        equal = equal and out.dtype == np.int32 and _arrays_equal(out, x)
        if i >= job["warmup"]:
            enc_s.append(t1 - t0)
            dec_s.append(t2 - t1)
    del out
    hwm = _proc_status_kib("VmHWM")
    assert blob is not None
    peak_mib = None if hwm is None or rss0 is None else (hwm - rss0) / 1024.0

    n = x.size
    result: Dict[str, Any] = dict(
        case=job["case"],
        label=config["label"],
        coder=config["coder"],
        precision=config["precision"],
        threads=config["threads"],
        single_threaded_library=config["coder"] != "taskcodec",
        num_symbols=int(n),
        repeats=job["repeats"],
        warmup=job["warmup"],
        encode_s=enc_s,
        decode_s=dec_s,
        encode_msym_s=n / statistics.median(enc_s) / 1e6,
        decode_msym_s=n / statistics.median(dec_s) / 1e6,
        encode_msym_s_best=n / min(enc_s) / 1e6,
        decode_msym_s_best=n / min(dec_s) / 1e6,
        bytes=len(blob),
        bits_per_symbol=8.0 * len(blob) / n,
        decoded_equal=bool(equal),
        baseline_rss_mib=None if rss0 is None else rss0 / 1024.0,
        peak_rss_extra_mib=peak_mib,
        memory_method="VmHWM - VmRSS after clear_refs reset"
        if reset
        else "VmHWM (not reset: includes loading) - VmRSS",
    )
    result.update(coder.extras(blob))
    core = coder.core_times(blob, job["repeats"])
    if core:
        result.update(core)
        result["encode_core_msym_s"] = n / statistics.median(core["encode_core_s"]) / 1e6
        result["decode_core_msym_s"] = n / statistics.median(core["decode_core_s"]) / 1e6
    return result


def _run_isolated(job: Dict[str, Any]) -> Dict[str, Any]:
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(run_job, job).result()


# ---------------------------------------------------------------------------- report
def _fmt(v: Optional[float], spec: str) -> str:
    return "-" if v is None else format(v, spec)


TABLE_COLUMNS = [
    ("case", "case", "s"),
    ("coder", "label", "s"),
    ("thr", "threads", "d"),
    ("prec", "precision", "d"),
    ("enc Msym/s", "encode_msym_s", ".1f"),
    ("dec Msym/s", "decode_msym_s", ".1f"),
    ("bytes", "bytes", ",d"),
    ("bits/sym", "bits_per_symbol", ".4f"),
    ("ideal b/s", "ideal_bits_per_symbol", ".4f"),
    ("overhead %", "overhead_pct", ".3f"),
    ("peak MiB", "peak_rss_extra_mib", ".1f"),
    ("ok", "decoded_equal", "s"),
]


def _cells(r: Dict[str, Any]) -> List[str]:
    cells = []
    for _, key, spec in TABLE_COLUMNS:
        v = r.get(key)
        if key == "decoded_equal":
            cells.append("yes" if v else "NO")
        elif spec == "s":
            cells.append(str(v))
        else:
            cells.append(_fmt(v, spec))
    return cells


def text_table(results: List[Dict[str, Any]]) -> str:
    rows = [[h for h, _, _ in TABLE_COLUMNS]] + [_cells(r) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for j, row in enumerate(rows):
        lines.append(
            "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))
            )
        )
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(results: List[Dict[str, Any]]) -> str:
    head = [h for h, _, _ in TABLE_COLUMNS]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" if i < 2 else "---:" for i in range(len(head))) + "|",
    ]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in results]
    return "\n".join(lines)


def plot(results: List[Dict[str, Any]], cases: List[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(r["label"] for r in results))
    by = {(r["case"], r["label"]): r for r in results}
    panels = [
        ("encode_msym_s", "encode Msym/s (log)", True),
        ("decode_msym_s", "decode Msym/s (log)", True),
        ("overhead_pct", "size overhead vs ideal, %", False),
        ("peak_rss_extra_mib", "peak extra RSS, MiB", False),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    width = 0.8 / max(1, len(labels))
    xs = np.arange(len(cases))
    colors = plt.get_cmap("tab10")
    for ax, (key, ylabel, log) in zip(axes.ravel(), panels):
        for j, label in enumerate(labels):
            vals = [by.get((c, label), {}).get(key) for c in cases]
            vals = [np.nan if v is None else v for v in vals]
            bars = ax.bar(
                xs + (j - (len(labels) - 1) / 2) * width, vals, width, label=label, color=colors(j)
            )
            if key != "peak_rss_extra_mib":
                fmt = "%.2f" if key == "overhead_pct" else "%.0f"
                ax.bar_label(bars, fmt=fmt, fontsize=6, rotation=90, padding=2)
        ax.set_xticks(xs, cases)
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
        ax.margins(y=0.15)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)


# ---------------------------------------------------------------------------- main
def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--symbols",
        type=int,
        default=DEFAULT_SYMBOLS,
        help="symbols per case (rounded to whole [64, 16, 16] items; default 10M)",
    )
    ap.add_argument(
        "--repeats", type=int, default=5, help="timed runs after one warm-up (default 5)"
    )
    ap.add_argument(
        "--cases",
        nargs="+",
        default=None,
        metavar="CASE",
        help=f"subset of {', '.join(CASES)} (space or comma separated)",
    )
    ap.add_argument(
        "--coders",
        nargs="+",
        default=None,
        metavar="CODER",
        help=f"subset of {', '.join(CODER_NAMES)}",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results",
        help="output directory (default bench/results)",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_SYMBOLS:,} symbols, 1 repeat (overrides --symbols/--repeats)",
    )
    args = ap.parse_args(argv)

    def subset(values: Optional[List[str]], allowed: Any, what: str) -> List[str]:
        if not values:
            return list(allowed)
        chosen = [v for item in values for v in item.split(",") if v]
        bad = [v for v in chosen if v not in allowed]
        if bad:
            ap.error(f"unknown {what}: {', '.join(bad)} (choose from {', '.join(allowed)})")
        return list(dict.fromkeys(chosen))

    args.cases = subset(args.cases, CASES, "case")
    args.coders = subset(args.coders, CODER_NAMES, "coder")
    if args.quick:
        args.symbols, args.repeats = QUICK_SYMBOLS, 1
    if args.symbols < 1 or args.repeats < 1:
        ap.error("--symbols and --repeats must be positive")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    from tqdm import tqdm

    machine = describe_machine()
    configs = [c for c in CONFIGS if c["coder"] in args.coders]
    started = _dt.datetime.now(_dt.timezone.utc)
    print(f"machine: {machine_summary(machine)}", flush=True)
    print(
        f"cases: {', '.join(args.cases)}; coders: {', '.join(c['label'] for c in configs)}; "
        f"~{args.symbols:,} symbols, {args.repeats} repeat(s) + 1 warm-up",
        flush=True,
    )

    case_info: Dict[str, Dict[str, Any]] = {}
    results: List[Dict[str, Any]] = []
    errors: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="taskcodec-bench-") as tmp:
        jobs = []
        for name in args.cases:
            case = make_case(name, args.symbols)
            d = Path(tmp) / name
            d.mkdir()
            np.save(d / "symbols.npy", case.pop("symbols"))
            np.save(d / "pmf.npy", case["pmf"])
            np.save(d / "offsets.npy", case["offsets"])
            case_info[name] = {
                k: (v.tolist() if isinstance(v, np.ndarray) else v)
                for k, v in case.items()
                if k not in ("pmf", "name")
            }
            for config in configs:
                jobs.append(
                    dict(
                        case=name,
                        case_dir=str(d),
                        config=config,
                        repeats=args.repeats,
                        warmup=1,
                        progress=not args.quick,
                    )
                )
        bar = tqdm(jobs, desc="coders", position=0, disable=None)
        for job in bar:
            bar.set_postfix_str(f"{job['case']}: {job['config']['label']}")
            try:
                r = _run_isolated(job)
            except Exception as exc:  # a coder that fails is reported, the others still run
                errors.append(dict(case=job["case"], label=job["config"]["label"], error=repr(exc)))
                tqdm.write(f"FAILED {job['case']} / {job['config']['label']}: {exc!r}")
                continue
            info = case_info[job["case"]]
            ideal = info["ideal_bits"]
            r["ideal_bits_per_symbol"] = info["ideal_bits_per_symbol"]
            r["overhead_pct"] = (8.0 * r["bytes"] - ideal) / ideal * 100.0
            if r.get("table_bits") is not None:
                r["table_overhead_pct"] = (r["table_bits"] - ideal) / ideal * 100.0
            results.append(r)

    title = (
        f"taskcodec vs constriction vs CompressAI, ~{args.symbols:,} symbols/case, "
        f"median of {args.repeats}\n{machine_summary(machine)}"
    )
    report = dict(
        benchmark="coders",
        timestamp=started.isoformat(timespec="seconds"),
        duration_s=round((_dt.datetime.now(_dt.timezone.utc) - started).total_seconds(), 1),
        machine=machine,
        config=dict(
            symbols_requested=args.symbols,
            repeats=args.repeats,
            warmup=1,
            quick=args.quick,
            seed=SEED,
            layout="[N, 64, 16, 16], channel_axis=1, one table per channel",
            cases=args.cases,
            coders=[c["label"] for c in configs],
        ),
        method=dict(
            timing=TIMING_METHOD,
            memory=MEMORY_METHOD,
            size=SIZE_METHOD,
            threads="constriction and CompressAI are single-threaded libraries; "
            "taskcodec runs with threads=1 and threads=2.",
        ),
        cases=case_info,
        results=results,
        errors=errors,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = args.out / "coders.json", args.out / "coders.png"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    if results:
        plot(results, args.cases, png_path, title)

    print()
    print(text_table(results))
    core = [r for r in results if "encode_core_msym_s" in r]
    for r in core:
        print(
            f"  {r['case']} / {r['label']}: C++ call alone (lists prepared beforehand) "
            f"{r['encode_core_msym_s']:.1f} / {r['decode_core_msym_s']:.1f} Msym/s encode / decode"
        )
    print(
        "  constriction and CompressAI are single-threaded; peak MiB = peak extra RSS while coding "
        "(VmHWM after a reset, fresh process per row)."
    )
    print()
    print(markdown_table(results))
    print()
    print(f"wrote {json_path} and {png_path}")

    bad = [r for r in results if not r["decoded_equal"]]
    for r in bad:
        print(f"DECODE MISMATCH: {r['case']} / {r['label']}", file=sys.stderr)
    for e in errors:
        print(f"ERROR: {e['case']} / {e['label']}: {e['error']}", file=sys.stderr)
    return 1 if bad or errors else 0


if __name__ == "__main__":
    sys.exit(main())
