"""``taskcodec demo``: the device / edge / cloud loop on one machine.

1. Starts the cloud planner and the edge server as real processes on loopback.
2. Starts a device (this process) that reaches the edge through an emulated link
   (token buckets on its real sockets) and asks the cloud to plan each request.
3. Sends classification (MobileNetV2, real ImageNet weights), captioning and VQA (a small
   BLIP with random, untrained weights — loudly marked) requests at each uplink bandwidth of
   the sweep (downlink = 2 x uplink, as the study's 250 / 500 KB/s), with the policy choosing
   the mode; and, for the plot, each mode forced on one photo.
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

__all__ = ["add_arguments", "main", "run", "DEFAULT_BANDWIDTHS", "DEFAULT_SLOWDOWN"]

DEFAULT_BANDWIDTHS = (1000.0, 500.0, 300.0, 250.0, 100.0)
DEFAULT_SLOWDOWN = 4.0
"""The demo's device is emulated 4x slower than the machine (a small board next to an edge
box); with one machine playing both, device-only would otherwise always win."""

REQUESTS = (
    ("what kind of animal is this?", "chelsea"),
    ("what is this?", "coffee"),
    ("describe this photo", "astronaut"),
    ("is the man wearing a helmet?", "astronaut"),
)
REFUSED_REQUEST = "book me a flight to Paris"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo-out",
                   help="folder for the JSON, the plot and the server logs (default: %(default)s)")
    p.add_argument("--bandwidths", type=float, nargs="+", default=list(DEFAULT_BANDWIDTHS),
                   help="uplink kB/s to sweep (default: %(default)s)")
    p.add_argument("--slowdown", type=float, default=DEFAULT_SLOWDOWN,
                   help="emulated device slowness vs this machine (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3,
                   help="forced-mode runs per bandwidth for the plot (median; default 3)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per process (default: %(default)s)")
    p.add_argument("--planner", choices=["auto", "embedding", "rules"], default="auto",
                   help="cloud planner back end (default: %(default)s)")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 2) -> str:
    from taskcodec.demo import _table as table

    return table(headers, rows, left)


def run(out: Path, *, bandwidths: Sequence[float] = DEFAULT_BANDWIDTHS,
        slowdown: float = DEFAULT_SLOWDOWN, repeats: int = 3, threads: int = 1,
        planner: str = "auto", echo: Any = print) -> Dict[str, Any]:
    """Run the demo, write its JSON and plot into ``out``, return the JSON-able report."""
    import torch

    from taskcodec.demo import load_photo
    from taskcodec.pipeline.cloud import PlanRefused
    from taskcodec.pipeline.device import DeviceClient
    from taskcodec.pipeline.models import UNTRAINED_BANNER
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
        return _run_device(out, cloud.url, edge.url, bandwidths, slowdown, repeats, echo,
                           load_photo, DeviceClient, PlanRefused, UNTRAINED_BANNER)
    finally:
        for svc in reversed(services):
            svc.stop()
        echo(f"servers stopped ({', '.join(f'{s.name} exit {s.proc.returncode}' for s in services)})")


def _run_device(out: Path, cloud_url: str, edge_url: str, bandwidths: Sequence[float],
                slowdown: float, repeats: int, echo: Any, load_photo: Any, DeviceClient: Any,
                PlanRefused: Any, banner: str) -> Dict[str, Any]:
    rows: List[Dict[str, Any]] = []
    curves: Dict[str, Dict[float, float]] = {"edge-only": {}, "device-only": {}, "split": {}}
    with DeviceClient(edge_url, cloud_url=cloud_url, slowdown=slowdown) as dev:
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
        photos = {name: load_photo(name) for _, name in REQUESTS}
        warned = False
        for bw in bandwidths:
            dev.link.set(up_kBps=bw, down_kBps=2 * bw)
            dev.measure_link()
            for text, name in REQUESTS:
                for r in dev.ask(text, photos[name]):
                    if r.untrained and not warned:
                        echo(banner)
                        warned = True
                    rows.append({
                        "up_kBps": bw, "request": text, "photo": name, "task": r.task,
                        "mode": r.option.label() if r.option else r.mode,
                        "bytes_up": r.bytes_up, "latency_ms": round(r.latency_ms, 1),
                        "answer": r.answer if r.ok else f"ERROR {r.error}",
                        "untrained": r.untrained, "measured_up_kBps": round(
                            (dev.up_Bps or 0) / 1e3, 1), "reason": r.reason,
                    })
            for mode in curves:
                lat = [dev.run("classify", "mobilenet_v2", photos["chelsea"], mode=mode)
                       for _ in range(repeats)]
                if all(r.ok for r in lat):
                    curves[mode][bw] = statistics.median(r.latency_ms for r in lat)
    table = _table(
        ["uplink kB/s", "request (photo)", "mode", "bytes up", "ms", "answer"],
        [[f"{r['up_kBps']:g}", f"{r['request']} ({r['photo']})", r["mode"],
          f"{r['bytes_up']:,}", f"{r['latency_ms']:.0f}",
          (r["answer"] or "")[:40] + (" [UNTRAINED]" if r["untrained"] else "")] for r in rows],
    )
    echo("")
    echo(table)
    echo("")
    echo("latency of each mode forced (chelsea, classification, median ms):")
    echo(_table(["uplink kB/s", *curves],
                [[f"{bw:g}", *(f"{curves[m].get(bw, float('nan')):.0f}" for m in curves)]
                 for bw in bandwidths], left=1))
    report = {"machine": _machine(), "slowdown": slowdown, "rows": rows,
              "forced_ms": {m: {str(k): v for k, v in c.items()} for m, c in curves.items()}}
    (out / "pipeline_demo.json").write_text(json.dumps(report, indent=1))
    _plot(out / "pipeline_latency.png", bandwidths, curves, rows, slowdown)
    echo(f"\nwrote {out / 'pipeline_demo.json'} and {out / 'pipeline_latency.png'}")
    return report


def _machine() -> Dict[str, Any]:
    import platform

    import torch

    import taskcodec

    return {"platform": platform.platform(), "processor": platform.processor(),
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "taskcodec": taskcodec.__version__}


def _plot(path: Path, bandwidths: Sequence[float], curves: Dict[str, Dict[float, float]],
          rows: List[Dict[str, Any]], slowdown: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for mode, c in curves.items():
        xs = sorted(c)
        ax.plot(xs, [c[x] for x in xs], marker="o", label=f"{mode} (forced)")
    auto = [r for r in rows if r["photo"] == "chelsea"]
    ax.scatter([r["up_kBps"] for r in auto], [r["latency_ms"] for r in auto], marker="x",
               s=80, color="k", label="policy's choice", zorder=5)
    for r in auto:
        ax.annotate(r["mode"], (r["up_kBps"], r["latency_ms"]), fontsize=7,
                    textcoords="offset points", xytext=(4, 6))
    ax.set_xlabel("uplink bandwidth (kB/s; downlink 2x)")
    ax.set_ylabel("end-to-end latency (ms)")
    ax.set_xscale("log")
    ax.set_title(f"MobileNetV2 classification, device {slowdown:g}x slower than edge")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
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
        report = run(Path(args.out), bandwidths=args.bandwidths, slowdown=args.slowdown,
                     repeats=args.repeats, threads=args.threads, planner=args.planner)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    errors = [r for r in report["rows"] if str(r["answer"]).startswith("ERROR")]
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
