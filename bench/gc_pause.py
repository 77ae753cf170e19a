"""How long Python's full garbage collection stalls a loaded edge, before and after
:func:`taskcodec.pipeline.server_common.settle_heap` (which every server calls once loaded).

Loads the edge's models as ``taskcodec serve-edge`` does (:class:`EdgeService`, no codec
calibration), leaves the garbage of a few requests' worth of small objects, and times full
collections (``gc.collect()``): the median of ``--runs``, then the same after ``settle_heap``.
A collection holds the GIL, so every request in flight waits for it.

    python bench/gc_pause.py [--models mobilenet_v2 scenes-blip] [--runs 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import describe_machine, machine_summary  # noqa: E402


def full_collection_ms(runs: int) -> float:
    """Median ms of ``runs`` full collections, each after some fresh request garbage."""
    times = []
    for _ in range(runs):
        garbage = [{"answer": str(i), "p": [i / 7.0]} for i in range(20_000)]
        del garbage
        t0 = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main(argv: Any = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["mobilenet_v2", "scenes-blip"])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be at least 1")

    from taskcodec.pipeline.edge import EdgeService
    from taskcodec.pipeline.server_common import settle_heap

    service = EdgeService(args.models, calibrate=False)
    tracked = len(gc.get_objects())
    row: Dict[str, Any] = {"models": sorted(service.runtimes), "tracked_objects": tracked,
                           "before_ms": full_collection_ms(args.runs)}
    settle_heap()
    row.update(frozen_objects=gc.get_freeze_count(), after_ms=full_collection_ms(args.runs))
    print(f"edge with {', '.join(row['models'])}: {tracked:,} objects tracked")
    print(f"full collection: {row['before_ms']:.1f} ms, after settle_heap "
          f"{row['after_ms']:.1f} ms ({row['frozen_objects']:,} objects frozen; "
          f"median of {args.runs})")
    machine = describe_machine()
    print(machine_summary(machine))
    if args.json:
        args.json.write_text(json.dumps({**row, "runs": args.runs, "machine": machine},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
