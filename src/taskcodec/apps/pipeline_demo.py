"""``taskcodec demo``: the device / edge / cloud loop on one machine.

1. Starts the cloud planner and the edge server as real processes on loopback.
2. Starts a device (this process) that reaches the edge through an emulated link
   (token buckets on its real sockets) and asks the cloud to plan each request.
3. Sends classification requests on photos (MobileNetV2, real ImageNet weights) and
   captioning and VQA requests on generated scenes (the small BLIP trained on them,
   :mod:`taskcodec.zoo.vlm`) at each uplink bandwidth of the sweep (downlink = 2 x uplink, as
   the study's 250 / 500 kB/s), with the policy choosing the mode; and, for the plot, each
   mode forced for each task.
4. Prints a table (bandwidth, request, mode, bytes sent, latency, answer), writes
   ``pipeline_demo.json`` and ``pipeline_latency.png`` into ``--out``, and stops both servers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from taskcodec._tables import format_table

__all__ = ["add_arguments", "main", "run", "DEFAULT_UP_KB_S", "DEFAULT_SLOWDOWN",
           "DEFAULT_REPEATS"]

DEFAULT_UP_KB_S = (1000.0, 500.0, 300.0, 250.0, 100.0)
"""The uplink bandwidths the demo sweeps, in kB/s (kilobytes per second)."""
DEFAULT_SLOWDOWN = 4.0
"""The demo's device is emulated 4x slower than the machine (a small board next to an edge
box); with one machine playing both, device-only would otherwise always win."""

DEFAULT_REPEATS = 9
"""Runs of each forced mode per bandwidth; the plot and table show their median (3 runs left
the split / edge-only ratio of one task moving by 0.1 between demo runs)."""

REQUESTS = (
    ("what kind of animal is this?", "chelsea"),
    ("what is this?", "coffee"),
    ("describe this picture", "scene-test-1"),
    ("how many objects are there?", "scene-test-1"),
    ("what colour is the largest object?", "scene-test-2"),
)
"""(request, image): scikit-image photos, or generated scenes (``scene-<split>-<index>``,
seed 0) for the vision-language requests."""
FORCED = (("classify", "mobilenet_v2", "chelsea", None),
          ("caption", "scenes-blip", "scene-test-1", None),
          ("vqa", "scenes-blip", "scene-test-1", "how many objects are there?"))
"""(task, model, image, question) timed with each mode forced, for the plot."""


def load_image(name: str) -> Any:
    """A scikit-image photo by name, or ``scene-<split>-<index>`` (generated, seed 0)."""
    if name.startswith("scene-"):
        from taskcodec.zoo import scenes

        _, split, index = name.split("-")
        return scenes.scene(0, split, int(index)).image
    from taskcodec.zoo.photos import load_photo

    return load_photo(name)
REFUSED_REQUEST = "book me a flight to Paris"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo-out",
                   help="folder for the JSON, the plot and the server logs (default: %(default)s)")
    p.add_argument("--up-kB-s", type=float, nargs="+", default=list(DEFAULT_UP_KB_S),
                   metavar="KB_S", help="uplink bandwidths to sweep, in kB/s (kilobytes per "
                   "second); the downlink is twice each (default: %(default)s)")
    p.add_argument("--slowdown", type=float, default=DEFAULT_SLOWDOWN,
                   help="emulated device slowness vs this machine (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                   help="forced-mode runs per bandwidth for the plot (median; default: "
                   "%(default)s)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per process (default: %(default)s)")
    p.add_argument("--planner", choices=["auto", "embedding", "rules"], default="auto",
                   help="cloud planner back end (default: %(default)s)")


def run(out: Path, *, up_kB_s: Sequence[float] = DEFAULT_UP_KB_S,
        slowdown: float = DEFAULT_SLOWDOWN, repeats: int = DEFAULT_REPEATS, threads: int = 1,
        planner: str = "auto", echo: Any = print) -> Dict[str, Any]:
    """Run the demo, write its JSON and plot into ``out``, return the JSON-able report."""
    import torch

    from taskcodec.pipeline.procs import start_service

    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    env = {"OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    echo("starting the cloud planner and the edge server on loopback (real processes) ...")
    services = []
    try:
        cloud = start_service("cloud", ["--planner", planner], log_path=str(out / "cloud.log"),
                              env=env, wait=False)
        services.append(cloud)
        edge = start_service("edge", ["--threads", str(threads)],
                             log_path=str(out / "edge.log"), env=env, wait=False)
        services.append(edge)
        cloud.wait_ready()
        edge.wait_ready()
        echo(f"  cloud {cloud.url} (pid {cloud.proc.pid}), edge {edge.url} (pid {edge.proc.pid}),"
             f" up in {time.perf_counter() - t0:.0f} s")
        for line in cloud.log().splitlines() + edge.log().splitlines():
            if line.startswith(("taskcodec", "!!!")):
                echo(f"  {line}")
        return _run_device(out, cloud.url, edge.url, up_kB_s, slowdown, repeats, echo)
    finally:
        for svc in reversed(services):
            svc.stop()
        stopped = ", ".join(f"{s.name} exit {s.proc.returncode}" for s in services)
        echo(f"servers stopped ({stopped})")


def _run_device(out: Path, cloud_url: str, edge_url: str, up_kB_s: Sequence[float],
                slowdown: float, repeats: int, echo: Any) -> Dict[str, Any]:
    from taskcodec.errors import PlanRefused
    from taskcodec.pipeline.device import DeviceClient
    from taskcodec.zoo.runtimes import REGISTRY

    rows: List[Dict[str, Any]] = []
    curves: Dict[str, Dict[str, Dict[float, float]]] = {
        task: {"edge-only": {}, "device-only": {}, "split": {}} for task, *_ in FORCED}
    # The link is re-measured at each bandwidth of the sweep (below), not again within one.
    with DeviceClient(edge_url, cloud_url=cloud_url, slowdown=slowdown, reprobe_s=600.0) as dev:
        echo(f"device: emulated {slowdown:g}x slower than this machine; link = token buckets on "
             f"its sockets to the edge; measured compute (ms): "
             + ", ".join(f"head@{k} {v:.0f}" for k, v in
                         dev.device_profile["mobilenet_v2"]["head_ms"].items())
             + f", full {dev.device_profile['mobilenet_v2']['full_ms']:.0f}")
        plans = {}
        for text, _ in REQUESTS:
            plans[text] = dev.plan(text)
            echo(f"plan for {text!r}: {json.dumps(plans[text])}")
        try:
            dev.plan(REFUSED_REQUEST)
            echo(f"plan for {REFUSED_REQUEST!r}: NOT refused")
        except PlanRefused as exc:
            echo(f"refused: {exc}")
        photos = {name: load_image(name) for name in {n for _, n in REQUESTS} | {f[2] for f in FORCED}}
        for bw in up_kB_s:
            dev.link.set(up_kB_s=bw, down_kB_s=2 * bw)
            dev.measure_link()
            for text, name in REQUESTS:
                for r in dev.ask(text, photos[name]):
                    rows.append({
                        "up_kB_s": bw, "request": text, "photo": name, "task": r.task,
                        "mode": r.option.label() if r.option else r.mode,
                        "bytes_up": r.bytes_up, "latency_ms": round(r.latency_ms, 1),
                        "probe_ms": round(r.probe_ms, 1),
                        "answer": r.answer if r.ok else f"ERROR {r.error}",
                        "measured_up_kB_s": round(
                            dev.up_kB_s or 0, 1), "reason": r.reason,
                    })
            for task, model, name, question in FORCED:
                for mode in curves[task]:
                    if mode == "device-only" and not REGISTRY[model].device_fits:
                        continue
                    lat = [dev.run(task, model, photos[name], question=question, mode=mode)
                           for _ in range(repeats)]
                    if all(r.ok for r in lat):
                        curves[task][mode][bw] = statistics.median(r.latency_ms for r in lat)
    table = format_table(
        ["uplink kB/s", "request (photo)", "mode", "bytes up", "ms", "answer"],
        [[f"{r['up_kB_s']:g}", f"{r['request']} ({r['photo']})", r["mode"],
          f"{r['bytes_up']:,}", f"{r['latency_ms']:.0f}",
          (r["answer"] or "")[:40]] for r in rows],
        left=2,
    )
    echo("")
    echo(table)
    echo("")
    for task, model, name, question in FORCED:
        c = curves[task]
        echo(f"latency of each mode forced ({task}, {model}, {name}, median ms):")
        modes = [m for m in c if c[m]]
        echo(format_table(["uplink kB/s", *modes],
                          [[f"{bw:g}", *(f"{c[m].get(bw, float('nan')):.0f}" for m in modes)]
                           for bw in up_kB_s], left=1))
    report = {"machine": _machine(), "slowdown": slowdown, "rows": rows,
              "forced_ms": {t: {m: {str(k): v for k, v in c.items()} for m, c in tc_.items()}
                            for t, tc_ in curves.items()}}
    (out / "pipeline_demo.json").write_text(json.dumps(report, indent=1))
    _plot(out / "pipeline_latency.png", curves, rows, slowdown)
    echo(f"\nwrote {out / 'pipeline_demo.json'} and {out / 'pipeline_latency.png'}")
    return report


def _machine() -> Dict[str, Any]:
    import platform

    import torch

    import taskcodec

    return {"platform": platform.platform(), "processor": platform.processor(),
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "taskcodec": taskcodec.__version__}


def _plot(path: Path, curves: Dict[str, Dict[str, Dict[float, float]]],
          rows: List[Dict[str, Any]], slowdown: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(FORCED), figsize=(5 * len(FORCED), 4.2), squeeze=False)
    for ax, (task, model, name, _) in zip(axes[0], FORCED):
        for mode, c in curves[task].items():
            xs = sorted(c)
            if xs:
                ax.plot(xs, [c[x] for x in xs], marker="o", label=f"{mode} (forced)")
        auto = [r for r in rows if r["photo"] == name and r["task"] == task]
        ax.scatter([r["up_kB_s"] for r in auto], [r["latency_ms"] for r in auto], marker="x",
                   s=80, color="k", label="policy's choice", zorder=5)
        for r in auto:
            ax.annotate(r["mode"], (r["up_kB_s"], r["latency_ms"]), fontsize=7,
                        textcoords="offset points", xytext=(4, 6))
        ax.set_xlabel("uplink (kB/s = 1000 bytes/s; downlink 2x)")
        ax.set_xscale("log")
        ax.set_title(f"{task}, {model}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("end-to-end latency (ms)")
    fig.suptitle(f"device {slowdown:g}x slower than the edge", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(args: Optional[argparse.Namespace] = None) -> int:
    """``taskcodec demo``."""
    if args is None:
        p = argparse.ArgumentParser(prog="taskcodec demo")
        add_arguments(p)
        args = p.parse_args()
    import signal
    import threading

    previous = None
    if threading.current_thread() is threading.main_thread():
        # SIGTERM unwinds like Ctrl-C, so the servers are stopped on the way out.
        previous = signal.signal(signal.SIGTERM,
                                 lambda *_: sys.exit(128 + int(signal.SIGTERM)))
    try:
        report = run(Path(args.out), up_kB_s=args.up_kB_s, slowdown=args.slowdown,
                     repeats=args.repeats, threads=args.threads, planner=args.planner)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    errors = [r for r in report["rows"] if str(r["answer"]).startswith("ERROR")]
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
