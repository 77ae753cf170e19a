"""The ``taskcodec`` console script.

    taskcodec info         version, stream format version, CUDA availability
    taskcodec demo         the device / edge / cloud pipeline on loopback, with a bandwidth sweep
    taskcodec serve-edge   the edge server (model tails and full models)
    taskcodec serve-cloud  the cloud planner
    taskcodec device       send a request from this machine as a device
    taskcodec codec-demo   compress real MobileNetV2 activations end to end (sizes, ratio, speed)
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from typing import Any, List, Optional

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


def _cmd_codec_demo(args: argparse.Namespace) -> int:
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


def _need_pipeline() -> None:
    missing = [m for m in ("torch", "torchvision", "fastapi", "uvicorn", "httpx", "jsonschema",
                           "PIL") if importlib.util.find_spec(m) is None]
    if missing:
        raise SystemExit(f"taskcodec: this command needs {', '.join(missing)}; install them "
                         "with: pip install 'taskcodec[pipeline]'")


def _token(args: argparse.Namespace) -> Optional[str]:
    return args.token or os.environ.get("TASKCODEC_TOKEN") or None


def _cmd_serve_edge(args: argparse.Namespace) -> int:
    _need_pipeline()
    import torch

    from taskcodec.pipeline.edge import serve_edge

    if args.threads:
        torch.set_num_threads(args.threads)
    serve_edge(args.host, args.port, models=args.models, token=_token(args),
               max_body_bytes=args.max_body_bytes, calibrate=not args.no_split)
    return 0


def _cmd_serve_cloud(args: argparse.Namespace) -> int:
    _need_pipeline()
    from taskcodec.pipeline import cloud

    if args.planner == "openai" or (args.planner == "auto" and args.llm_base_url):
        if args.llm_base_url:
            os.environ["TASKCODEC_LLM_BASE_URL"] = args.llm_base_url
        if args.llm_model:
            os.environ["TASKCODEC_LLM_MODEL"] = args.llm_model
        planner: cloud.Planner = cloud.OpenAIPlanner.from_env()
    elif args.planner == "embedding":
        planner = cloud.EmbeddingPlanner()
    elif args.planner == "rules":
        planner = cloud.RulePlanner()
    else:
        planner = cloud.default_planner()
    cloud.serve_cloud(args.host, args.port, planner=planner, token=_token(args))
    return 0


def _load_image(spec: str) -> Any:
    from pathlib import Path

    from taskcodec.demo import load_photo
    from taskcodec.pipeline.models import decode_jpeg

    if Path(spec).is_file():
        return decode_jpeg(Path(spec).read_bytes())
    return load_photo(spec)


def _cmd_device(args: argparse.Namespace) -> int:
    _need_pipeline()
    import torch

    from taskcodec.pipeline.cloud import PlanRefused
    from taskcodec.pipeline.device import DeviceClient
    from taskcodec.pipeline.models import UNTRAINED_BANNER

    if args.threads:
        torch.set_num_threads(args.threads)
    photo = _load_image(args.image)
    with DeviceClient(args.edge, cloud_url=args.cloud, token=_token(args),
                      emulate=not args.no_emulation, up_kBps=args.up, down_kBps=args.down,
                      latency_ms=args.latency, timeout_s=args.timeout, slowdown=args.slowdown,
                      accuracy_floor=args.floor) as dev:
        if args.cloud:
            try:
                results = dev.ask(args.request, photo)
            except PlanRefused as exc:
                print(f"refused: {exc}")
                return 3
        else:
            task = {"image-classification": "classify", "image-to-text": "caption",
                    "visual-question-answering": "vqa"}.get(args.task, args.task)
            model = "mobilenet_v2" if task == "classify" else "blip-tiny"
            results = [dev.run(task, model, photo, question=args.request, mode=args.mode)]
        if dev.up_Bps:
            print(f"link: measured uplink {dev.up_Bps / 1e3:.0f} kB/s, rtt {dev.rtt_ms:.1f} ms")
        for r in results:
            if r.untrained:
                print(UNTRAINED_BANNER)
            print(f"{r.task} ({r.model}): mode {r.option.label() if r.option else r.mode}, "
                  f"{r.bytes_up:,} B up, {r.latency_ms:.0f} ms -> "
                  f"{r.answer if r.ok else 'ERROR: ' + str(r.error)}")
            print(f"  policy: {r.reason}")
            if r.fallback:
                print(f"  FALLBACK: {r.fallback}")
    return 0 if all(r.ok for r in results) else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    _need_pipeline()
    from taskcodec.pipeline import demo as pdemo

    return pdemo.main(args)


def _add_pipeline_commands(sub: Any) -> None:
    p = sub.add_parser("serve-edge", help="serve model tails and full models (edge tier)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: %(default)s)")
    p.add_argument("--port", type=int, default=8600, help="(default: %(default)s)")
    p.add_argument("--models", nargs="+", default=["mobilenet_v2", "blip-tiny"],
                   help="registry models to serve (default: %(default)s)")
    p.add_argument("--token", help="require this bearer token (or set TASKCODEC_TOKEN)")
    p.add_argument("--max-body-bytes", type=int, default=8 * 1024 * 1024,
                   help="413 past this request size (default: %(default)s)")
    p.add_argument("--no-split", action="store_true",
                   help="skip the codec calibration (faster start; no split inference)")
    p.add_argument("--threads", type=int, default=0, help="torch threads")
    p.set_defaults(func=_cmd_serve_edge)

    p = sub.add_parser("serve-cloud", help="serve the request planner (cloud tier)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: %(default)s)")
    p.add_argument("--port", type=int, default=8500, help="(default: %(default)s)")
    p.add_argument("--planner", choices=["auto", "openai", "embedding", "rules"],
                   default="auto", help="auto: an OpenAI-compatible endpoint when configured, "
                   "else the offline embedding matcher, else rules (default: %(default)s)")
    p.add_argument("--llm-base-url", help="OpenAI-compatible base URL (or "
                   "TASKCODEC_LLM_BASE_URL); the key comes from TASKCODEC_LLM_API_KEY")
    p.add_argument("--llm-model", help="model name (or TASKCODEC_LLM_MODEL)")
    p.add_argument("--token", help="require this bearer token (or set TASKCODEC_TOKEN)")
    p.set_defaults(func=_cmd_serve_cloud)

    p = sub.add_parser("device", help="send one request from this machine as a device")
    p.add_argument("--edge", default="http://127.0.0.1:8600", help="edge URL (default: %(default)s)")
    p.add_argument("--cloud", help="cloud planner URL; without it, give --task")
    p.add_argument("--request", default="what is in this photo?", help="the request text "
                   "(the question, for VQA without a planner)")
    p.add_argument("--task", default="image-classification",
                   help="task when no planner is used (default: %(default)s)")
    p.add_argument("--image", default="chelsea",
                   help="a JPEG / PNG file or a scikit-image photo name (default: %(default)s)")
    p.add_argument("--mode", choices=["auto", "edge-only", "device-only", "split"],
                   default="auto", help="(default: %(default)s)")
    p.add_argument("--up", type=float, default=250.0, help="emulated uplink kB/s (default: 250)")
    p.add_argument("--down", type=float, default=500.0, help="emulated downlink kB/s (default: 500)")
    p.add_argument("--latency", type=float, default=0.0, help="added one-way latency ms")
    p.add_argument("--no-emulation", action="store_true", help="use the real link as it is")
    p.add_argument("--slowdown", type=float, default=1.0,
                   help="emulate a device this many times slower than this machine")
    p.add_argument("--floor", type=float, default=0.9, help="accuracy floor of split options")
    p.add_argument("--timeout", type=float, default=10.0, help="edge timeout, seconds")
    p.add_argument("--token", help="bearer token (or set TASKCODEC_TOKEN)")
    p.add_argument("--threads", type=int, default=0, help="torch threads")
    p.set_defaults(func=_cmd_device)

    from taskcodec.pipeline.demo import add_arguments

    p = sub.add_parser("demo", help="the device / edge / cloud pipeline on loopback: requests, "
                       "a bandwidth sweep, a table and a latency-vs-bandwidth plot")
    add_arguments(p)
    p.set_defaults(func=_cmd_demo)


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

    _add_pipeline_commands(sub)

    p_demo = sub.add_parser(
        "codec-demo",
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
    p_demo.set_defaults(func=_cmd_codec_demo)
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
