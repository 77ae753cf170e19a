"""Smoke runs: ``taskcodec demo`` (tiny sweep; its servers must be gone afterwards) and the
pipeline benchmark (one bandwidth, one photo, against the session's edge)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _pids_alive(pids):
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        alive.append(pid)
    return alive


@pytest.mark.slow
def test_demo_runs_the_loop_and_cleans_up(weights, tmp_path, capsys):
    from taskcodec.apps import cli

    rc = cli.main(["demo", "--out", str(tmp_path), "--up-kB-s", "400", "--repeats", "1",
                   "--planner", "rules", "--slowdown", "4"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "refused:" in out and "UNTRAINED" not in out.upper()
    report = json.loads((tmp_path / "pipeline_demo.json").read_text())
    tasks = {r["task"] for r in report["rows"]}
    assert tasks == {"classify", "caption", "vqa"}
    from taskcodec.apps.pipeline_demo import load_image, REQUESTS
    from taskcodec.zoo import scenes

    for r in report["rows"]:  # the scene requests get the scene's own answers
        if r["request"] == "how many objects are there?":
            assert r["answer"] == str(len(scenes.scene(0, "test", 1).objects))
        if r["request"] == "what colour is the largest object?":
            assert r["answer"] == scenes.scene(0, "test", 2).objects[0].colour
        if r["task"] == "caption":
            a = scenes.scene(0, "test", 1).objects[0]
            assert f"{a.colour} {a.shape}" in r["answer"]
    assert {p for _, p in REQUESTS} <= {r["photo"] for r in report["rows"]}
    assert load_image("scene-test-1").shape == (224, 224, 3)
    assert set(report["forced_ms"]) == {"classify", "caption", "vqa"}
    cls = [r for r in report["rows"] if r["task"] == "classify"]
    assert {r["answer"] for r in cls} == {"Egyptian cat", "espresso"}
    assert all(r["bytes_up"] >= 0 and r["latency_ms"] > 0 for r in report["rows"])
    assert (tmp_path / "pipeline_latency.png").stat().st_size > 10_000
    # Both servers were started as real processes and stopped again.
    pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", out)]
    assert len(pids) == 2, out
    assert _pids_alive(pids) == []


def test_bench_script_smoke(edge, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the installed taskcodec, as users run it
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "pipeline_latency.py"), "--out", str(tmp_path),
         "--edge", edge.url, "--up-kB-s", "250", "--photos", "coffee", "--repeats", "1",
         "--slowdown", "2"],
        capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads((tmp_path / "pipeline_latency_slowdown2.json").read_text())
    (s,) = report["summary"]
    assert s["photos"] == 1 and s["split_equals_edge_only"] == 1
    assert {row["mode"] for row in report["rows"]} == {"edge-only", "edge-only-224",
                                                        "device-only", "split", "policy"}
    assert "target at 250 kB/s" in r.stdout and "machine:" in r.stdout
    assert (tmp_path / "pipeline_latency_slowdown2.png").is_file()


def test_edge_load_bench_smoke(weights, tmp_path):
    """bench/edge_load.py with the plain and the batching uvicorn engine, two devices, one
    short window: answers checked against the plain server's, JSON, table and plot written."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "edge_load.py"), "--out", str(tmp_path),
         "--engines", "uvicorn", "uvicorn-batch", "--concurrency", "2", "--repeats", "1",
         "--duration", "1.5", "--warmup", "0.5"],
        capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    result = json.loads((tmp_path / "edge_load.json").read_text())
    rows = {row["engine"]: row for row in result["rows"]}
    assert set(rows) == {"uvicorn", "uvicorn-batch"}
    for row in rows.values():
        assert row["ok"] > 0 and row["failed"] == 0 and row["mismatches"] == 0
        assert row["p99_ms"] >= row["p50_ms"] > 0 and row["cpu_ms_per_answer"]
    assert "uvicorn-batch at 2 devices" in r.stdout and "machine:" in r.stdout
    assert (tmp_path / "edge_load.png").is_file()


def test_edge_load_devices_draw_independently_and_cpu_is_read_per_process():
    """The load test's devices draw their own requests (the asked JPEG share, sequences that
    differ between devices and repeat for one device), and its CPU reading follows a process
    through a change of title and counts a process started in between whole."""
    import importlib.util
    import itertools

    spec = importlib.util.spec_from_file_location("edge_load_bench", ROOT / "bench" / "edge_load.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    seqs = [list(itertools.islice(bench._draw(6, 6, 0.25, j), 4000)) for j in range(3)]
    for seq in seqs:
        assert 0.22 < sum(i >= 6 for i in seq) / len(seq) < 0.28
        assert set(seq) == set(range(12))
    assert len({tuple(seq) for seq in seqs}) == 3  # every device its own sequence
    assert list(itertools.islice(bench._draw(6, 6, 0.25, 1), 4000)) == seqs[1]
    assert all(i < 6 for i in itertools.islice(bench._draw(6, 0, 0.25, 0), 500))
    before = {10: ("ray::Replica", 5.0), 11: ("haproxy", 1.0)}
    after = {10: ("ray::Replica", 7.5), 11: ("haproxy", 1.25), 12: ("ray::Replica", 0.5)}
    assert bench._cpu_between(before, after) == {"ray::Replica": 3.0, "haproxy": 0.25}


def test_gc_pause_bench_smoke(weights, tmp_path):
    """bench/gc_pause.py on MobileNetV2: the loaded edge's objects are frozen by settle_heap
    and a full collection gets faster; JSON and summary written."""
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gc_pause.py"), "--models", "mobilenet_v2",
         "--runs", "1", "--json", str(tmp_path / "gc.json")],
        capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    row = json.loads((tmp_path / "gc.json").read_text())
    assert row["models"] == ["mobilenet_v2"]
    assert row["frozen_objects"] >= row["tracked_objects"] // 2 > 0
    assert row["before_ms"] > row["after_ms"] > 0
    assert "after settle_heap" in r.stdout
