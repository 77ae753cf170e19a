"""``taskcodec codec-demo``: compress real MobileNetV2 activations end to end.

What it does, in the order a split deployment would:

1. Loads torchvision's MobileNetV2 with its real ImageNet weights, offline
   (:func:`taskcodec.zoo.models.load_model`), and cuts it after ``features.<split>`` with
   :func:`taskcodec.split.partition`: the *head* runs on the device, the *tail* on the server.
2. Calibrates a :class:`taskcodec.nn.FeatureCodec` on the head's activations of one set of real
   photos (crops and flips of scikit-image's bundled pictures): a quantization step per channel
   (``step_per_std`` times the channel's standard deviation) and the integer tables, built once
   and shared by both ends; the steps travel in each frame.
3. For each *other* photo: runs the head, ``codec.compress`` (quantize + rANS frame),
   ``codec.decompress``, runs the tail, and compares the top-1 class with the full model's.

Needs the ``demo`` extra (torch, torchvision, scikit-image) and the weights.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

import taskcodec as tc
from taskcodec._tables import format_table
from taskcodec.errors import TaskcodecError
from taskcodec.zoo.photos import CALIBRATION_PHOTOS, EVALUATION_PHOTOS

__all__ = ["ImageResult", "DemoReport", "run", "format_report", "DEFAULT_SPLIT",
           "DEFAULT_STEP_PER_STD", "DEFAULT_PRECISION", "DEFAULT_REPEATS", "JPEG_QUALITY"]

DEFAULT_SPLIT = 6
DEFAULT_STEP_PER_STD = 0.5
DEFAULT_PRECISION = 14
DEFAULT_REPEATS = 5
JPEG_QUALITY = 75


def _median_seconds(fn: Callable[[], Any], repeats: int) -> Tuple[float, Any]:
    times, out = [], None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


@dataclasses.dataclass(frozen=True)
class ImageResult:
    """One evaluation photo, coded at the cut."""

    name: str
    feature_shape: Tuple[int, ...]
    float32_bytes: int
    float16_bytes: int
    frame_bytes: int
    jpeg_bytes: int
    encode_seconds: float
    decode_seconds: float
    exact: bool  # the frame's symbols decode bit for bit to the quantized activations
    escapes: int  # symbols outside the tables' ranges (coded losslessly)
    feature_snr_db: float  # float activations vs decompressed ones
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


def run(
    images: Sequence[str] = EVALUATION_PHOTOS,
    *,
    split: int = DEFAULT_SPLIT,
    step_per_std: float = DEFAULT_STEP_PER_STD,
    precision: int = DEFAULT_PRECISION,
    repeats: int = DEFAULT_REPEATS,
    calibration: Sequence[str] = CALIBRATION_PHOTOS,
) -> DemoReport:
    """Calibrate on ``calibration``, then code the cut's activations of each of ``images``
    (scikit-image photo names or JPEG / PNG paths).

    Encode and decode times are the median of ``repeats`` runs of one image's frame.
    """
    t_start = time.perf_counter()
    overlap = sorted(set(images) & set(calibration))
    if overlap:
        raise TaskcodecError(f"evaluation photos must differ from calibration photos: {overlap}")
    if not images:
        raise TaskcodecError("give at least one evaluation photo")
    if not step_per_std > 0:
        raise TaskcodecError(f"step_per_std must be positive, got {step_per_std}")

    import torch

    from taskcodec.nn import FeatureCodec
    from taskcodec.zoo.images import encode_jpeg
    from taskcodec.zoo.models import load_model, network_input, normalize
    from taskcodec.zoo.photos import calibration_views, load_photo

    model, prep = load_model("mobilenet_v2")
    if not 0 <= split < len(model.features) - 1:
        raise TaskcodecError(f"split must lie in 0..{len(model.features) - 2}, got {split}")
    head, tail = tc.split.partition(model, f"features.{split}")

    with torch.inference_mode():
        # ---- calibration: steps and tables from other photos than the evaluated ones
        t0 = time.perf_counter()
        rng = np.random.default_rng(0)
        views = [normalize(network_input(v, prep), prep)
                 for name in calibration for v in calibration_views(load_photo(name), rng)]
        codec = FeatureCodec.calibrate(head(torch.stack(views)), step_per_std=step_per_std,
                                       precision=precision)
        calibrate_seconds = time.perf_counter() - t0
        table = codec.table

        results: List[ImageResult] = []
        for name in images:
            u8 = network_input(torch.from_numpy(load_photo(name)).permute(2, 0, 1), prep)
            feat = head(normalize(u8, prep).unsqueeze(0))
            probs_full = torch.softmax(tail(feat), dim=1)[0]

            # device side: quantize + entropy-code; server side: decode + dequantize
            enc_s, blob = _median_seconds(lambda: codec.compress(feat), repeats)
            dec_s, feat_hat = _median_seconds(lambda: codec.decompress(blob), repeats)
            probs_codec = torch.softmax(tail(feat_hat), dim=1)[0]

            symbols = codec.quantize(feat)
            decoded = tc.decode(blob, table)
            local = symbols - table.offsets.reshape(1, -1, 1, 1)
            escapes = int(((local < 0) | (local >= table.lengths.reshape(1, -1, 1, 1))).sum())
            err = float(((feat - feat_hat) ** 2).mean())
            signal = float((feat**2).mean())
            i_full, i_codec = int(probs_full.argmax()), int(probs_codec.argmax())
            results.append(ImageResult(
                name=str(name),
                feature_shape=tuple(int(s) for s in feat.shape),
                float32_bytes=feat.numel() * 4,
                float16_bytes=feat.numel() * 2,
                frame_bytes=len(blob),
                jpeg_bytes=len(encode_jpeg(u8.permute(1, 2, 0).numpy(), JPEG_QUALITY)),
                encode_seconds=enc_s,
                decode_seconds=dec_s,
                exact=bool(decoded.shape == symbols.shape and (decoded == symbols).all()),
                escapes=escapes,
                feature_snr_db=10.0 * float(np.log10(signal / max(err, 1e-30))),
                top1_full=prep.categories[i_full],
                top1_codec=prep.categories[i_codec],
                prob_full=float(probs_full[i_full]),
                prob_codec=float(probs_codec[i_codec]),
            ))

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


def format_report(report: DemoReport) -> str:
    """The demo's printed output: settings, then a size/speed table and a task table."""
    rs = report.results
    shape = "x".join(str(s) for s in rs[0].feature_shape) if rs else "?"
    out = [
        f"taskcodec {tc.__version__} codec-demo: MobileNetV2 (torchvision, ImageNet weights), "
        f"cut after features.{report.split} (tc.split.partition) -> float activations {shape}",
        f"calibration: tc.nn.FeatureCodec on {report.calibration_views} views (crops, flips) of "
        f"{len(report.calibration_photos)} other photos ({', '.join(report.calibration_photos)})",
        f"quantizer: round(x / step[c]), step[c] = {report.step_per_std:g} x calibration std "
        f"of channel c; tables: smoothed calibration histograms, precision "
        f"{report.precision} bits, {report.table_bytes} B, shared once (not in the frames)",
        f"frames: header + per-channel steps (meta) + rANS payload + CRC32C; times: median of "
        f"repeated runs, coder threads=auto, torch on {report.torch_threads} threads",
        "",
    ]
    sizes = [
        [r.name, f"{r.float32_bytes:,}", f"{r.float16_bytes:,}", f"{r.frame_bytes:,}",
         f"{r.ratio_vs_float16:.1f}x", f"{r.bits_per_symbol:.2f}", f"{r.jpeg_bytes:,}",
         f"{r.encode_seconds * 1e3:.2f}", f"{r.encode_msym_s:.0f}",
         f"{r.decode_seconds * 1e3:.2f}", f"{r.decode_msym_s:.0f}", "yes" if r.exact else "NO"]
        for r in rs
    ]
    out.append(format_table(
        ["image", "float32 B", "float16 B", "frame B", "vs f16", "bits/sym",
         f"JPEG q{JPEG_QUALITY} B", "enc ms", "Msym/s", "dec ms", "Msym/s", "exact"],
        sizes,
    ))
    out.append("")
    task = [
        [r.name, f"{r.top1_full} ({r.prob_full:.2f})", f"{r.top1_codec} ({r.prob_codec:.2f})",
         "yes" if r.agree else "no", f"{r.feature_snr_db:.1f}", str(r.escapes)]
        for r in rs
    ]
    out.append(format_table(
        ["image", "top-1 full model (p)", "top-1 through codec (p)", "agree",
         "feature SNR dB", "escapes"],
        task,
        left=3,
    ))
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


def main(images: Optional[Sequence[str]] = None, **kwargs: Any) -> int:
    """Run the demo (keyword arguments as :func:`run`), print the report; 0 when every frame
    decoded bit for bit, else 1."""
    report = run(images or EVALUATION_PHOTOS, **kwargs)
    print(format_report(report))
    return 0 if all(r.exact for r in report.results) else 1
