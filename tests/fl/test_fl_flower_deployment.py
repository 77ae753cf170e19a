"""Flower deployment on loopback: a SuperLink, four SuperNodes and ``flwr run``, started here.

The ServerApp wraps FedAvg in ``CompressedStrategy``; each SuperNode's ClientApp carries
``compression_mod``, so every update crosses the SuperLink as a taskcodec frame, the
residuals live in each SuperNode's context between rounds, clients drop out (30 % per
round) and one frame is corrupted on its way out (partition 3, round 2). The server's
broadcast is compressed too: nodes that took part in the last round get a step frame
applied to the copy of the model they keep in their context, the others the dense model.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ci_support import install_hint, missing, require

flwr = require("flwr")

HERE = Path(__file__).resolve().parent
TOOLS = ("flower-superlink", "flower-supernode", "flower-superexec", "flwr")

PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "taskcodec-deploy-check"
version = "1.0.0"
description = "taskcodec compression mod and strategy wrapper in a Flower deployment"
license = "Apache-2.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "taskcodec"

[tool.flwr.app.components]
serverapp = "flower_deploy_app:server_app"
clientapp = "flower_deploy_app:client_app"

[tool.flwr.app.config]
out = ""
"""


def _free_ports(n: int) -> list:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _descendants(pid: int) -> list:
    """All live descendants of ``pid`` (Linux /proc), so detached children are reaped too."""
    children: dict = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _stop(procs: list) -> None:
    family = [d for p in procs for d in _descendants(p.pid)]
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
    for pid in family:  # anything a graceful stop left behind
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _wait_port(port: int, proc: subprocess.Popen, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the SuperLink exited early with status {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"the SuperLink did not listen on port {port} within {timeout} s")


def _deploy(tmp_path, modules, components: str, nodes: int, extra_env=None):
    """Runs the Flower App made of ``modules`` (copied from this folder) on a loopback SuperLink
    with ``nodes`` SuperNodes; its summary (the run config's ``out``)."""
    bindir = os.path.dirname(sys.executable)
    path = os.pathsep.join([bindir, os.environ.get("PATH", "")])
    exe = {t: shutil.which(t, path=path) for t in TOOLS}
    if not all(exe.values()):
        missing(f"Flower's executables not found: {[t for t, e in exe.items() if not e]}",
                install_hint("flwr"))
    from packaging.version import Version

    if Version(flwr.__version__) < Version("1.42"):  # e.g. 1.32 has no --host/--port SuperLink
        missing(f"the deployment commands here are those of flwr >= 1.42 (what the fl extra requires); "
                f"installed: {flwr.__version__}", install_hint("flwr"))

    app = tmp_path / "app"
    app.mkdir()
    for name in modules:
        shutil.copy(HERE / name, app / name)
    (app / "pyproject.toml").write_text(PYPROJECT.replace("flower_deploy_app", components))
    link_port, *node_ports = _free_ports(1 + nodes)
    home = tmp_path / "flwr-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "loopback"\n\n[superlink.loopback]\n'
        f'address = "127.0.0.1:{link_port}"\ninsecure = true\n')
    env = dict(os.environ, FLWR_HOME=str(home), FLWR_DISABLE_UPDATE_CHECK="1", PATH=path, **(extra_env or {}))
    # The ServerApp and ClientApp processes import taskcodec from where this test does.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and Path(p).resolve() != HERE)
    out = tmp_path / "summary.json"
    logs = {}

    def start(name, *args):
        logs[name] = open(tmp_path / f"{name}.log", "w")
        return subprocess.Popen([exe[args[0]], *args[1:]], env=env, cwd=tmp_path, stdout=logs[name],
                                stderr=subprocess.STDOUT, start_new_session=True)

    def tails() -> str:
        return "\n".join(f"--- {n}\n{(tmp_path / f'{n}.log').read_text()[-1500:]}" for n in logs)

    procs = []
    try:
        # In-memory link state (no --database): with a SQLite file, flwr 1.42 once failed under
        # concurrent SuperNode requests ("cannot commit - no transaction is active").
        procs.append(start("superlink", "flower-superlink", "--insecure", "--host", "127.0.0.1",
                           "--port", str(link_port), "--disable-runtime-dependency-installation"))
        try:
            _wait_port(link_port, procs[0], timeout=60)
        except (RuntimeError, TimeoutError) as e:
            logs["superlink"].flush()
            pytest.fail(f"{e}\n{tails()}")
        for k, port in enumerate(node_ports):
            procs.append(start(f"supernode{k}", "flower-supernode", "--insecure",
                               "--superlink", f"127.0.0.1:{link_port}", "--port", str(port),
                               "--node-config", f"partition-id={k} num-partitions={nodes}"))
        run = subprocess.run([exe["flwr"], "run", str(app), "loopback", "--stream",
                              "--run-config", f'out="{out}"'],
                             env=env, cwd=tmp_path, capture_output=True, text=True, timeout=420)
    finally:
        _stop(procs)
        for f in logs.values():
            f.close()

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:] + tails()
    assert out.exists(), run.stdout[-3000:] + tails()
    return json.loads(out.read_text())


@pytest.mark.slow
def test_deployment_on_loopback_with_dropout_and_a_corrupt_update(tmp_path):
    import flower_deploy_app as deploy

    res = _deploy(tmp_path, ("flower_app.py", "flower_deploy_app.py"), "flower_deploy_app", deploy.NODES)
    losses = res["losses"]
    assert len(losses) == deploy.ROUNDS + 1, losses
    # Round 2's frame from partition 3 is corrupted: dropped with its reason, the round goes on.
    assert [r for r, d in res["dropped"].items() if d] == ["2"], res["dropped"]
    assert "ChecksumError" in res["dropped"]["2"][0][1]
    # Partitions 1 and 3 fail round 1 (30 % dropout): two frames arrive.
    import flower_app

    arrived = [p for p in range(deploy.NODES) if not flower_app.dropped(1, p)]
    assert arrived == [0, 2]
    dense_bytes = (flower_app.DIM_IN * flower_app.DIM_OUT + flower_app.DIM_OUT) * 4
    assert 0 < res["uplink_bytes"]["1"] / len(arrived) < dense_bytes / 3
    # Downlink: dense to everyone in round 1; later, a frame to each node whose last reply
    # arrived (partition 3's corrupted round-2 update does not count).
    frames = {int(r): n for r, n in res["downlink_frames"].items()}
    expected = flower_app.frames_expected(deploy.NODES, deploy.ROUNDS)
    assert frames == expected, (frames, expected)
    assert sum(frames.values()) > 0
    # Error feedback across rounds through each SuperNode's context: the loss keeps falling.
    assert losses[-1] < 0.5 * losses[0], losses
    assert all(b <= a for a, b in zip(losses, losses[1:])), losses


@pytest.mark.slow
def test_secure_aggregation_deployment_ten_supernodes_with_dropout(tmp_path):
    """SecAgg+ with the shared-support compressor (two values a field element) on a loopback
    SuperLink with ten SuperNodes, 30 % of them dropping out of each round: every round
    completes with the sum of the survivors (SecAgg+ reconstructs the masks of the others), the
    server unpacks their mean, and the loss falls."""
    import flower_app
    import secure_app
    import secure_deploy_app as deploy

    spy = tmp_path / "spy"
    spy.mkdir()
    res = _deploy(tmp_path, ("flower_app.py", "secure_app.py", "secure_deploy_app.py"), "secure_deploy_app",
                  deploy.NODES, extra_env={"TASKCODEC_SPY_DIR": str(spy)})
    losses = res["losses"]
    assert len(losses) == deploy.ROUNDS + 1 and losses[-1] < 0.75 * losses[0], losses
    step = 2 * 8.0 / secure_app.FIELD["packed"][0]
    for rnd in range(1, deploy.ROUNDS + 1):
        survivors = [p for p in range(deploy.NODES) if not flower_app.dropped(rnd, p)]
        vecs = {p: np.load(spy / f"vec-{rnd}-{p}.npy") for p in survivors}
        assert sorted(f.name for f in spy.glob(f"vec-{rnd}-*.npy")) == sorted(f"vec-{rnd}-{p}.npy" for p in survivors)
        agg = np.load(spy / f"agg-{rnd}.npy")
        assert np.abs(agg - np.mean(list(vecs.values()), axis=0)).max() < 2 * step
        secure_app.check_unpacked(str(spy), rnd, survivors, sampled=deploy.NODES)
    frames = {int(r): n for r, n in res["downlink_frames"].items()}
    assert frames[1] == 0 and all(frames[r] > 0 for r in range(2, deploy.ROUNDS + 1)), frames
