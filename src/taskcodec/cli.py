"""The ``taskcodec`` console script.

    taskcodec info      version, stream format version, CUDA availability
    taskcodec demo      compress real MobileNetV2 activations end to end (sizes, ratio, speed)
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

import taskcodec as tc
from taskcodec import _core, demo
from taskcodec.errors import TaskcodecError

__all__ = ["main", "build_parser"]


def _cmd_info(args: argparse.Namespace) -> int:
    import numpy as np

    rows = [
        ("taskcodec", tc.__version__),
        ("stream format version", str(int(_core.FORMAT_VERSION))),
        ("has_cuda", str(tc.has_cuda())),
        ("default lanes", str(int(_core.DEFAULT_LANES))),
        ("default chunk size", f"{int(_core.DEFAULT_CHUNK_SIZE):,} symbols"),
        ("max table precision", f"{int(_core.MAX_PRECISION)} bits"),
        ("numpy", np.__version__),
        ("python", sys.version.split()[0]),
        ("installed at", os.path.dirname(os.path.abspath(tc.__file__))),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    try:
        import torch
        import torchvision  # noqa: F401
        import skimage  # noqa: F401
    except ImportError as exc:
        print(
            f"taskcodec demo needs torch, torchvision and scikit-image ({exc}); "
            "install them with: pip install 'taskcodec[demo]'",
            file=sys.stderr,
        )
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    report = demo.run(
        args.images or demo.EVALUATION_PHOTOS,
        split=args.split,
        step_per_std=args.step_per_std,
        precision=args.precision,
        repeats=args.repeats,
    )
    print(demo.format_report(report))
    return 0 if all(r.exact for r in report.results) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskcodec",
        description="Task-oriented compression for edge-cloud AI on slow links.",
    )
    parser.add_argument("--version", action="version", version=f"taskcodec {tc.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p_info = sub.add_parser("info", help="version, stream format version, CUDA availability")
    p_info.set_defaults(func=_cmd_info)

    p_demo = sub.add_parser(
        "demo",
        help="compress real MobileNetV2 activations end to end and print sizes and speed",
        description=(
            "Split torchvision's MobileNetV2 (real ImageNet weights, loaded offline), calibrate "
            "per-channel steps and tables on some of scikit-image's photos, then code the "
            "split activations of other photos and compare the top-1 class."
        ),
    )
    # taskcodec.demo imports torch only when it runs, so `taskcodec info` needs no torch.
    p_demo.add_argument(
        "--images", nargs="+", metavar="NAME",
        help="scikit-image photos to evaluate, other than the calibration photos "
        f"(default: {' '.join(demo.EVALUATION_PHOTOS)})",
    )
    p_demo.add_argument(
        "--split", type=int, default=demo.DEFAULT_SPLIT,
        help="cut after features[SPLIT] (default: %(default)s)",
    )
    p_demo.add_argument(
        "--step-per-std", type=float, default=demo.DEFAULT_STEP_PER_STD,
        help="quantization step as a multiple of each channel's calibration std "
        "(default: %(default)s)",
    )
    p_demo.add_argument(
        "--precision", type=int, default=demo.DEFAULT_PRECISION,
        help="table precision in bits (default: %(default)s)",
    )
    p_demo.add_argument(
        "--repeats", type=int, default=demo.DEFAULT_REPEATS,
        help="time encode / decode as the median of this many runs (default: %(default)s)",
    )
    p_demo.add_argument(
        "--threads", type=int, default=0, help="torch threads (default: torch's choice)"
    )
    p_demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``taskcodec`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except TaskcodecError as exc:
        print(f"taskcodec {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
