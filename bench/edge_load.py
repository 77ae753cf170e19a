#!/usr/bin/env python
"""Edge load test: throughput and latency against concurrent devices, for the plain
single-process edge (uvicorn), the same with in-process batching, and the edge on Ray Serve
with 1 and 2 replicas, batching on and off, behind Ray Serve's HTTP proxy or (``-haproxy``)
HAProxy straight to the replicas, all on this machine.

Each engine runs as a real ``taskcodec serve-edge`` process on loopback (MobileNetV2, real
ImageNet weights). This process plays ``C`` devices, each a closed loop (the next request
leaves when the previous answer is in) over its own HTTP connection (httpx, asyncio), each
drawing its requests independently of the others: a mix of split frames (the head's features
at cut ``--cut``, coded by the edge's own calibrated ``FeatureCodec`` at rate ``--rate``, as
``taskcodec device`` sends them) and camera JPEGs (edge-only, quality 90), built from real
photos. The windows of one engine and concurrency follow each other under unbroken load. For
every engine and concurrency: requests answered per second, p50 / p99 latency, errors, and
answers that differ from the plain server's answer to the same request (batched tails must
answer as single ones).

``--kill-replica S`` kills one Ray Serve replica (SIGKILL) ``S`` seconds into every Ray run:
the table then shows what the devices saw (errors, retried requests) while Ray restarts it.

Target (issue): with batching, throughput at 32 devices >= 1.5 x the plain server, at a p99
no worse than 2 x its p50. Writes ``edge_load.json`` and ``edge_load.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine, machine_summary  # noqa: E402

ENGINES = {  # name -> serve-edge arguments
    "uvicorn": ["--engine", "uvicorn"],
    "uvicorn-batch": ["--engine", "uvicorn", "--batch", "on"],
    "ray-1": ["--engine", "ray", "--replicas", "1", "--batch", "off"],
    "ray-1-batch": ["--engine", "ray", "--replicas", "1"],
    "ray-2": ["--engine", "ray", "--replicas", "2", "--batch", "off"],
    "ray-2-batch": ["--engine", "ray", "--replicas", "2"],
    # Ray Serve's direct ingress: HAProxy in front of the replicas, no Python proxy
    "ray-1-batch-haproxy": ["--engine", "ray", "--replicas", "1", "--ingress", "haproxy"],
    "ray-2-haproxy": ["--engine", "ray", "--replicas", "2", "--batch", "off",
                      "--ingress", "haproxy"],
    "ray-2-batch-haproxy": ["--engine", "ray", "--replicas", "2", "--ingress", "haproxy"],
}
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "motorcycle_right")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"),
                    help="folder for the JSON and the plot (default: %(default)s)")
    ap.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES),
                    help="engines to run (default: all)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32],
                    help="concurrent devices (default: %(default)s)")
    ap.add_argument("--duration", type=float, default=10.0,
                    help="seconds of one measured window (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="measured windows per engine and concurrency, back to back under the "
                    "same load; the table shows the window of median throughput "
                    "(default: %(default)s)")
    ap.add_argument("--warmup", type=float, default=10.0,
                    help="seconds of load before the first window (default: %(default)s)")
    ap.add_argument("--jpeg-share", type=float, default=0.25,
                    help="share of edge-only JPEG requests; the rest are split frames "
                    "(default: %(default)s)")
    ap.add_argument("--cut", type=int, default=13, help="split cut (default: %(default)s)")
    ap.add_argument("--rate", type=float, default=1.0,
                    help="split codec rate (step in channel stds; default: %(default)s)")
    ap.add_argument("--max-batch-size", type=int, default=16)
    ap.add_argument("--batch-wait-ms", type=float, default=5.0)
    ap.add_argument("--kill-replica", type=float, metavar="S",
                    help="kill one Ray Serve replica S seconds into each Ray run")
    ap.add_argument("--retries", type=int, default=2,
                    help="device retries of a request that got no answer, by the device "
                    "client's rule (EdgeConnection; default: %(default)s)")
    ap.add_argument("--timeout", type=float, default=30.0, help="request timeout, seconds")
    return ap.parse_args(argv)


# ------------------------------------------------------------------------ the requests
def build_requests(edge_url: str, cut: int, rate: float, jpeg_share: float,
                   ) -> List[Tuple[str, bytes]]:
    """(path, body) pairs: split frames and JPEGs of the photos, split first; the mix is
    drawn from them in :func:`_schedule`."""
    import httpx

    from taskcodec.zoo.images import encode_jpeg
    from taskcodec.zoo.photos import load_photo
    from taskcodec.zoo.runtimes import CodecCalibration, load_runtime

    rt = load_runtime("mobilenet_v2")
    codecs = httpx.get(f"{edge_url}/v1/models/mobilenet_v2/codecs", timeout=30).json()["codecs"]
    cal = next((CodecCalibration.from_json(d, rt.model) for d in codecs
                if d["at"] == cut and d.get("rate") == rate), None)
    if cal is None:
        sys.exit(f"the edge offers no codec at cut {cut}, rate {rate}")
    photos = [load_photo(p) for p in PHOTOS]
    split = [(f"/v1/split/mobilenet_v2?at={cut}",
              cal.codec.compress(rt.head(rt.preprocess(p), cut))) for p in photos]
    jpegs = [("/v1/infer/mobilenet_v2", encode_jpeg(p)) for p in photos]
    return split + jpegs if jpeg_share > 0 else split


def _draw(n_split: int, n_jpeg: int, jpeg_share: float, device: int,
          seed: int = 0) -> Iterator[int]:
    """Device ``device``'s request indexes, drawn independently of every other device's: a
    JPEG with probability ``jpeg_share``, else a split frame, of a photo chosen at random.
    (A fixed order shared by all devices, offset per device, let devices that were answered
    in one batch reach their JPEGs together: batches then held several times as many JPEGs
    as independent devices would send.)"""
    import numpy as np

    rng = np.random.default_rng([seed, device])
    while True:
        if n_jpeg and rng.random() < jpeg_share:
            yield n_split + int(rng.integers(n_jpeg))
        else:
            yield int(rng.integers(n_split))


async def _device(client: Any, reqs: Sequence[Tuple[str, bytes]], draw: Iterator[int],
                  until: float, t_measure: float, log: List[Dict[str, Any]],
                  retries: int) -> None:
    import httpx

    from taskcodec.pipeline.transport import retried_errors, transient

    while time.perf_counter() < until:
        i = next(draw)
        path, body = reqs[i]
        t0 = time.perf_counter()
        rec: Dict[str, Any] = {"i": i, "tries": 0, "t0": t0}
        for attempt in range(retries + 1):
            rec["tries"] = attempt + 1
            try:
                r = await client.post(path, content=body)
                rec["status"] = r.status_code
                if r.status_code == 200:
                    rec["answer"] = r.json().get("class_index")
                    break
                rec["error"] = f"HTTP {r.status_code}"
                if r.status_code < 500 or not transient(r):
                    break
            except httpx.HTTPError as exc:
                rec["status"], rec["error"] = 0, type(exc).__name__
                if not isinstance(exc, retried_errors()):  # a timeout: not sent again
                    break
            await asyncio.sleep(0.1 * (attempt + 1))  # EdgeConnection's back-off
        rec["ms"] = (time.perf_counter() - t0) * 1e3
        if t0 >= t_measure:
            log.append(rec)


async def load(url: str, reqs: Sequence[Tuple[str, bytes]], n_split: int, jpeg_share: float,
               concurrency: int, warmup: float, duration: float, windows: int,
               timeout: float, retries: int, mark: Callable[[], Any],
               ) -> Tuple[List[Dict[str, Any]], List[float], List[Any]]:
    """Run ``concurrency`` devices without a pause for ``warmup`` seconds and then ``windows``
    consecutive windows of ``duration`` seconds; the requests sent after the warm-up (with
    their start ``t0``), the windows' start times (and the end of the last), and ``mark()``
    called at each of those times."""
    import httpx

    log: List[Dict[str, Any]] = []
    t_measure = time.perf_counter() + warmup
    bounds = [t_measure + k * duration for k in range(windows + 1)]
    marks: List[Any] = []

    async def marker() -> None:
        for t in bounds:
            await asyncio.sleep(max(0.0, t - time.perf_counter()))
            marks.append(await asyncio.to_thread(mark))

    clients = [httpx.AsyncClient(base_url=url, timeout=timeout) for _ in range(concurrency)]
    try:
        await asyncio.gather(marker(), *(
            _device(c, reqs, _draw(n_split, len(reqs) - n_split, jpeg_share, j), bounds[-1],
                    t_measure, log, retries) for j, c in enumerate(clients)))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    return log, bounds, marks


def summarize(log: List[Dict[str, Any]], seconds: float,
              reference: Dict[int, Any]) -> Dict[str, Any]:
    ok = [r for r in log if r.get("status") == 200]
    ms = sorted(r["ms"] for r in ok)

    def pct(q: float) -> Optional[float]:
        return round(ms[min(len(ms) - 1, int(q * len(ms)))], 2) if ms else None

    return {"requests": len(log), "ok": len(ok), "rps": round(len(ok) / seconds, 2),
            "p50_ms": pct(0.5), "p99_ms": pct(0.99),
            "failed": len(log) - len(ok), "retried": sum(r["tries"] > 1 for r in log),
            "errors": sorted({r["error"] for r in log if r.get("status") != 200}),
            "retried_after": sorted({r["error"] for r in log if r["tries"] > 1}),
            "mismatches": sum(1 for r in ok if r["i"] in reference
                              and r.get("answer") != reference[r["i"]])}


def _cpu_seconds(svc: Any) -> Dict[int, Tuple[str, float]]:
    """CPU seconds so far of the server's processes (Ray's included) and of this process (the
    devices), by pid, with a name: Ray's workers retitle themselves by the task they run
    (``ray::X.method``), so only the part before the method names them."""
    import psutil

    out: Dict[int, Tuple[str, float]] = {}
    root = psutil.Process(svc.proc.pid)
    for p in [root, *root.children(recursive=True), psutil.Process()]:
        try:
            name = ("devices (load generator)" if p.pid == os.getpid() else
                    "edge process" if p.pid == root.pid else p.name())
            if name.startswith("ray::"):
                name = name.split(".")[0]
            t = p.cpu_times()
            out[p.pid] = (name, t.user + t.system)
        except psutil.Error:
            continue
    return out


def _cpu_between(before: Dict[int, Tuple[str, float]],
                 after: Dict[int, Tuple[str, float]]) -> Dict[str, float]:
    """CPU seconds used between two :func:`_cpu_seconds` readings, by process name (a process
    started in between counts whole)."""
    used: Dict[str, float] = {}
    for pid, (name, t) in after.items():
        used[name] = used.get(name, 0.0) + t - before.get(pid, (name, 0.0))[1]
    return used


def _kill_a_replica(svc: Any) -> Optional[int]:
    """SIGKILL one Ray Serve replica of the edge process ``svc``; its pid."""
    import psutil

    for p in psutil.Process(svc.proc.pid).children(recursive=True):
        try:
            if p.name().startswith("ray::ServeReplica"):
                p.kill()
                return p.pid
        except psutil.Error:
            continue
    return None


def run_engine(name: str, args: argparse.Namespace, work: Path,
               reference: Dict[int, Any], reqs: Optional[List[Tuple[str, bytes]]],
               concurrency: Sequence[int]) -> Tuple[List[Dict[str, Any]], List[Tuple[str, bytes]]]:
    """Start the engine, load it at every concurrency, stop it; the rows."""
    import httpx

    from taskcodec.pipeline.procs import start_service

    extra = ["--models", "mobilenet_v2", "--max-batch-size", str(args.max_batch_size),
             "--batch-wait-ms", str(args.batch_wait_ms)]
    rows = []
    with start_service("edge", [*ENGINES[name], *extra], log_path=str(work / f"{name}.log"),
                       ready_timeout=600) as svc:
        if reqs is None:
            reqs = build_requests(svc.url, args.cut, args.rate, args.jpeg_share)
        if not reference:  # the first engine's single answers are everyone's reference
            for i, (path, body) in enumerate(reqs):
                reference[i] = httpx.post(f"{svc.url}{path}", content=body,
                                          timeout=60).json().get("class_index")
        for c in concurrency:
            windows = _windows(svc, name, c, args, reqs, reference)
            # the window of median throughput stands for the rest; all are kept
            row = sorted(windows, key=lambda w: w["rps"])[len(windows) // 2]
            health = httpx.get(f"{svc.url}/health", timeout=10).json()
            row = {**row, "replicas": health.get("replicas", 1),
                   "ingress": health.get("ingress"),
                   "rps_windows": [w["rps"] for w in windows],
                   "p50_windows": [w["p50_ms"] for w in windows],
                   "p99_windows": [w["p99_ms"] for w in windows]}
            if args.kill_replica is not None and name.startswith("ray"):
                row["with_killed_replica"] = windows[0]
            rows.append(row)
            print(_line(row), flush=True)
        svc.stop(timeout=90)
    return rows, reqs


def _windows(svc: Any, name: str, c: int, args: argparse.Namespace,
             reqs: Sequence[Tuple[str, bytes]], reference: Dict[int, Any]) -> List[Dict[str, Any]]:
    """``--repeats`` consecutive windows of ``c`` devices after ``--warmup`` seconds of the
    same load (one replica killed ``--kill-replica`` seconds into the first)."""
    from taskcodec.pipeline.server_common import settle_heap

    # the devices' heap holds the model that built the requests: without this, a full
    # collection of it stalled every device for about 300 ms, a few times a run
    settle_heap()
    killer = None
    if args.kill_replica is not None and name.startswith("ray"):
        killer = _Timer(args.warmup + args.kill_replica, lambda: _kill_a_replica(svc))
    log, bounds, cpu = asyncio.run(load(
        svc.url, reqs, len(PHOTOS), args.jpeg_share, c, args.warmup, args.duration,
        args.repeats, args.timeout, args.retries, lambda: _cpu_seconds(svc)))
    rows = []
    for k in range(args.repeats):
        part = [r for r in log if bounds[k] <= r["t0"] < bounds[k + 1]]
        row = {"engine": name, "concurrency": c,
               **summarize(part, bounds[k + 1] - bounds[k], reference)}
        used = _cpu_between(cpu[k], cpu[k + 1])
        n = max(1, len(part))
        row["cpu_ms_per_answer"] = {key: round(v * 1e3 / n, 2) for key, v in sorted(
            used.items(), key=lambda kv: -kv[1]) if v > 0.05}
        rows.append(row)
    if killer is not None:
        rows[0]["killed_replica_pid"] = killer.result()
    return rows


class _Timer:
    """Run ``fn`` after ``delay`` seconds on a thread; :meth:`result` its return value."""

    def __init__(self, delay: float, fn: Any) -> None:
        import threading

        self.value: Any = None
        self.thread = threading.Timer(delay, lambda: setattr(self, "value", fn()))
        self.thread.start()

    def result(self) -> Any:
        self.thread.join()
        return self.value


def _line(r: Dict[str, Any]) -> str:
    return (f"| {r['engine']} | {r['concurrency']} | {r['rps']:.1f} | {r['p50_ms']} | "
            f"{r['p99_ms']} | {r['failed']} | {r['retried']} | {r['mismatches']} |")


def report(result: Dict[str, Any]) -> str:
    rows = result["rows"]
    out = [f"machine: {machine_summary(result['machine'])}",
           "| engine | devices | req/s | p50 ms | p99 ms | failed | retried | answers differ |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"] + [_line(r) for r in rows]
    top = max(result["settings"]["concurrency"])
    base = next((r for r in rows if r["engine"] == "uvicorn" and r["concurrency"] == top), None)
    out.append(f"CPU ms per answer at {top} devices (server processes by name; devices = this "
               "load generator):")
    for r in rows:
        if r["concurrency"] == top:
            out.append(f"  {r['engine']}: " + ", ".join(
                f"{k} {v:g}" for k, v in r.get("cpu_ms_per_answer", {}).items()))
    for r in rows:
        if base and r["concurrency"] == top and r["engine"] != "uvicorn" and base["rps"]:
            met = (r["rps"] >= 1.5 * base["rps"] and r["p99_ms"] is not None
                   and r["p99_ms"] <= 2 * r["p50_ms"])
            tails = ", ".join(f"{b / a:.2f}" for a, b in zip(r.get("p50_windows", []),
                                                            r.get("p99_windows", [])) if a)
            out.append(f"{r['engine']} at {top} devices: {r['rps'] / base['rps']:.2f}x the plain "
                       f"server, p99/p50 {r['p99_ms'] / r['p50_ms']:.2f} (every window: {tails})"
                       f" -> target {'met' if met else 'not met'}")
    return "\n".join(out)


def plot(result: Dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for eng in dict.fromkeys(r["engine"] for r in result["rows"]):
        rs = [r for r in result["rows"] if r["engine"] == eng]
        cs = [r["concurrency"] for r in rs]
        a.plot(cs, [r["rps"] for r in rs], "o-", label=eng)
        b.plot(cs, [r["p50_ms"] for r in rs], "o-", label=f"{eng} p50")
        b.plot(cs, [r["p99_ms"] for r in rs], "x--", color=b.lines[-1].get_color())
    a.set(xlabel="concurrent devices", ylabel="answers / s", title="throughput")
    b.set(xlabel="concurrent devices", ylabel="ms", yscale="log",
          title="latency (o p50, x p99)")
    a.legend(fontsize=8)
    for ax in (a, b):
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
    fig.suptitle(f"edge load: {machine_summary(result['machine'])[:90]}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    rows: List[Dict[str, Any]] = []
    reference: Dict[int, Any] = {}
    reqs = None
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="edge-load-") as work:
        # the plain server first: its answers are the reference (only those, when not asked for)
        for name in ["uvicorn"] + [e for e in args.engines if e != "uvicorn"]:
            got, reqs = run_engine(name, args, Path(work), reference, reqs,
                                   args.concurrency if name in args.engines else [])
            rows += got
    result = {"benchmark": "edge_load", "date": _dt.datetime.now().isoformat(timespec="seconds"),
              "machine": describe_machine(("taskcodec", "torch", "ray", "fastapi", "uvicorn",
                                           "httpx")),
              "settings": settings, "seconds": round(time.time() - t0, 1),
              "cpus": os.cpu_count(), "rows": rows}
    (out / "edge_load.json").write_text(json.dumps(result, indent=1))
    plot(result, out / "edge_load.png")
    print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
