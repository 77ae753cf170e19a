#!/usr/bin/env python
"""Pipeline benchmark: end-to-end latency vs uplink bandwidth for edge-only, device-only and
split + codec (MobileNetV2, real ImageNet weights), on real processes and sockets.

An edge server (``taskcodec serve-edge``) runs as a separate process on loopback (or give
``--edge URL``); this process is the device. The device reaches the edge through the
token-bucket link emulator on its sockets (downlink = 2 x uplink, no added latency) and is
emulated ``--slowdown`` times slower than this machine (each device computation is followed
by a sleep of ``slowdown - 1`` times its duration), since one machine plays both tiers.

For every bandwidth, photo and mode the device serves a classification request ``--repeats``
times; latency is the median, measured on the device from the photo in hand to the answer:

* ``edge-only``: the photo as captured, JPEG quality 90 (as an edge-only deployment sends it);
* ``edge-only-224``: a 224 x 224 centre crop of the resized photo, JPEG quality 90 (a device
  that shrinks the picture before uploading; the crop itself is not timed);
* ``device-only``: the whole model on the device;
* ``split``: the head on the device, the ``tc.nn.FeatureCodec`` frame up, the tail on the edge,
  at the cut and rate ``tc.split.choose`` picks among the codecs at or above the accuracy floor;
* ``policy``: whatever the device's policy picks (measured link, profiles, floor).

"Equal answers": the top-1 class of split vs edge-only on the same photo is reported per
photo. Target (issue): at 250 kB/s, split latency <= 0.5 x edge-only latency.

Bandwidths are in kB/s: kilobytes (1000 bytes) per second.

Writes ``pipeline_latency_slowdown<S>.json`` and ``.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine, machine_summary  # noqa: E402

MODES = ("edge-only", "edge-only-224", "device-only", "split", "policy")
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"),
                    help="folder for the JSON and the plot (default: %(default)s)")
    ap.add_argument("--up-kB-s", type=float, nargs="+", default=[1000, 500, 300, 250, 100],
                    metavar="KB_S", help="uplink bandwidths to sweep, kB/s (kilobytes per "
                    "second); the downlink is twice each (default: %(default)s)")
    ap.add_argument("--photos", nargs="+", default=list(PHOTOS),
                    help="scikit-image photo names or JPEG / PNG files (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="runs per bandwidth, photo and mode; latency is their median "
                    "(default: %(default)s)")
    ap.add_argument("--slowdown", type=float, default=8.0,
                    help="emulate a device this many times slower than this machine "
                    "(default: %(default)s)")
    ap.add_argument("--floor", type=float, default=1.0,
                    help="accuracy floor of split codecs (default 1.0: equal answers on the "
                    "held-out calibration views, as the target asks)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--edge", help="use this running edge instead of starting one")
    return ap.parse_args(argv)


def _center_crop_224(photo: Any) -> Any:
    import torch
    from torchvision.transforms.v2 import functional as F

    img = torch.from_numpy(photo).permute(2, 0, 1)
    img = F.center_crop(F.resize(img, [256], antialias=True), [224, 224])
    return img.permute(1, 2, 0).contiguous().numpy()


def run(args: argparse.Namespace, edge_url: str) -> Dict[str, Any]:
    from tqdm import tqdm

    from taskcodec.pipeline.device import DeviceClient
    from taskcodec.zoo.photos import load_photo

    photos = {p: load_photo(p) for p in args.photos}
    crops = {p: _center_crop_224(img) for p, img in photos.items()}
    rows: List[Dict[str, Any]] = []
    with DeviceClient(edge_url, slowdown=args.slowdown, accuracy_floor=args.floor) as dev:
        jobs = [(bw, p, m) for bw in args.up_kB_s for p in args.photos for m in MODES]
        bar = tqdm(jobs, desc="requests", disable=None)
        current = None
        for bw, name, mode in bar:
            if bw != current:
                dev.link.set(up_kB_s=bw, down_kB_s=2 * bw)
                dev.measure_link()
                current = bw
            img = crops[name] if mode == "edge-only-224" else photos[name]
            run_mode = {"edge-only-224": "edge-only", "policy": "auto"}.get(mode, mode)
            res = [dev.run("classify", "mobilenet_v2", img, mode=run_mode)
                   for _ in range(args.repeats)]
            bad = [r.error for r in res if not r.ok]
            if bad:
                raise RuntimeError(f"{mode} at {bw} kB/s on {name}: {bad[0]}")
            r = res[-1]
            rows.append({
                "up_kB_s": bw, "photo": name, "mode": mode,
                "chosen": r.option.label() if r.option else r.mode,
                "bytes_up": r.bytes_up, "answer": r.answer,
                "latency_ms": statistics.median(x.latency_ms for x in res),
                "latencies_ms": [round(x.latency_ms, 2) for x in res],
                "fallback": r.fallback, "measured_up_kB_s": round(dev.up_kB_s or 0, 1),
            })
        profile = {"device": dev.device_profile, "edge": dev.edge_info,
                   "codecs": [{"at": c.at, "rate": c.rate, "mean_bytes": c.mean_bytes,
                               "agreement": c.agreement}
                              for c in dev.calibrations.get("mobilenet_v2", [])]}
    return {"rows": rows, "profile": profile}


def summarize(rows: List[Dict[str, Any]], up_kB_s: List[float]) -> List[Dict[str, Any]]:
    out = []
    for bw in up_kB_s:
        at = [r for r in rows if r["up_kB_s"] == bw]
        s: Dict[str, Any] = {"up_kB_s": bw}
        for mode in MODES:
            rs = [r for r in at if r["mode"] == mode]
            if rs:
                s[f"{mode}_ms"] = statistics.mean(r["latency_ms"] for r in rs)
                s[f"{mode}_bytes"] = statistics.mean(r["bytes_up"] for r in rs)
        answers = {}
        for r in at:
            answers.setdefault(r["photo"], {})[r["mode"]] = r["answer"]
        s["split_equals_edge_only"] = sum(a.get("split") == a.get("edge-only")
                                          for a in answers.values())
        s["photos"] = len(answers)
        s["policy_modes"] = sorted({r["chosen"] for r in at if r["mode"] == "policy"})
        if "split_ms" in s and "edge-only_ms" in s:
            s["split_over_edge_only"] = s["split_ms"] / s["edge-only_ms"]
        out.append(s)
    return out


def plot(summary: List[Dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    xs = [s["up_kB_s"] for s in summary]
    for mode, style in zip(MODES, ("o-", "o--", "s-", "^-", "x:")):
        ys = [s.get(f"{mode}_ms") for s in summary]
        ax.plot(xs, ys, style, label=mode)
    ax.set_xscale("log")
    ax.set_xlabel("uplink (kB/s; downlink 2x)")
    ax.set_ylabel("end-to-end latency, mean over photos of the median (ms)")
    ax.set_title(title, fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    import torch

    from taskcodec.pipeline.procs import start_service

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = describe_machine(("taskcodec", "numpy", "torch", "torchvision", "fastapi",
                                "uvicorn", "httpx"))
    started = _dt.datetime.now(_dt.timezone.utc)
    print(f"machine: {machine_summary(machine)}", flush=True)
    edge = None
    try:
        if args.edge:
            url = args.edge
        else:
            log = Path(tempfile.mkdtemp(prefix="taskcodec-bench-")) / "edge.log"
            edge = start_service("edge", ["--threads", str(args.threads), "--models",
                                          "mobilenet_v2"], log_path=str(log),
                                 env={"OMP_NUM_THREADS": str(args.threads)})
            url = edge.url
        result = run(args, url)
    finally:
        if edge is not None:
            edge.stop()
    summary = summarize(result["rows"], args.up_kB_s)
    title = (f"MobileNetV2 classification, device {args.slowdown:g}x slower than the edge, "
             f"median of {args.repeats}, {len(args.photos)} photos\n{machine_summary(machine)}")
    report = {
        "benchmark": "pipeline_latency",
        "timestamp": started.isoformat(timespec="seconds"),
        "duration_s": round((_dt.datetime.now(_dt.timezone.utc) - started).total_seconds(), 1),
        "machine": machine,
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "summary": summary, **result,
        # Other work on the machine inflates and scatters every latency: recorded here.
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    target = next((s for s in summary if s["up_kB_s"] == 250), None)
    if target is not None and "split_over_edge_only" in target:
        report["target_250"] = {
            "split_over_edge_only": target["split_over_edge_only"], "goal": 0.5,
            "met": target["split_over_edge_only"] <= 0.5
            and target["split_equals_edge_only"] == target["photos"],
            "split_equals_edge_only": f"{target['split_equals_edge_only']}/{target['photos']}",
        }
    stem = f"pipeline_latency_slowdown{args.slowdown:g}"
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1, default=str))
    plot(summary, out / f"{stem}.png", title)

    from taskcodec._tables import format_table

    head = ["kB/s", *(f"{m} ms" for m in MODES), "split/edge", "same answer", "policy chose"]
    lines = []
    for s in summary:
        lines.append([f"{s['up_kB_s']:g}", *(f"{s.get(f'{m}_ms', float('nan')):.0f}"
                                              for m in MODES),
                      f"{s.get('split_over_edge_only', float('nan')):.2f}",
                      f"{s['split_equals_edge_only']}/{s['photos']}",
                      ",".join(s["policy_modes"])])
    print(format_table(head, lines, left=0))
    bytes_row = summary[0]
    print("mean bytes up: " + ", ".join(f"{m} {bytes_row.get(f'{m}_bytes', 0):,.0f}"
                                        for m in MODES))
    if "target_250" in report:
        t = report["target_250"]
        print(f"target at 250 kB/s: split / edge-only = {t['split_over_edge_only']:.2f} "
              f"(goal <= 0.5, equal answers {t['split_equals_edge_only']}): "
              f"{'MET' if t['met'] else 'NOT MET'}")
    print(f"load average at the end: {report['load_average']}")
    print(f"wrote {out / (stem + '.json')} and {out / (stem + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
