"""The ``taskcodec`` command line: entry points, help texts, exit statuses, early checks."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from ci_support import require, require_weights

import taskcodec as tc
from taskcodec.apps import cli

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = {"info", "demo", "serve-edge", "serve-cloud", "device", "codec-demo", "photos"}


def _python(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def _subparsers(parser: argparse.ArgumentParser) -> dict:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_python_m_taskcodec_runs_the_cli() -> None:
    r = _python("-m", "taskcodec", "--help")
    assert r.returncode == 0, r.stderr
    for command in COMMANDS:
        assert command in r.stdout
    r = _python("-m", "taskcodec", "--version")
    assert r.returncode == 0 and tc.__version__ in r.stdout


def test_console_script_points_at_the_cli() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"taskcodec": "taskcodec.apps.cli:main"}


def test_commands_and_their_names() -> None:
    subs = _subparsers(cli.build_parser())
    assert set(subs) == COMMANDS
    # `taskcodec demo` is the pipeline demo (what `make demo` runs), the codec demo is apart.
    assert "pipeline" in subs["demo"].description and "--up-kB-s" in subs["demo"].format_help()
    assert "FeatureCodec" in subs["codec-demo"].description


def test_every_option_of_every_command_has_help() -> None:
    parser = cli.build_parser()
    undocumented = []
    for name, sub in [("taskcodec", parser), *_subparsers(parser).items()]:
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            text = (action.help or "").strip()
            if not text or text.startswith("(default"):
                undocumented.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not undocumented, undocumented


def test_bandwidth_options_are_in_kilobytes_per_second() -> None:
    subs = _subparsers(cli.build_parser())
    device = " ".join(subs["device"].format_help().split())
    assert "--up-kB-s" in device and "--down-kB-s" in device and "kilobytes per second" in device
    args = cli.build_parser().parse_args(["device", "--up-kB-s", "100", "--down-kB-s", "200"])
    assert (args.up_kB_s, args.down_kB_s) == (100.0, 200.0)
    with pytest.raises(SystemExit) as info:  # the old unit-less spelling is gone
        cli.build_parser().parse_args(["device", "--up", "100"])
    assert info.value.code == cli.EXIT_USAGE
    for sub in subs.values():
        assert "kbps" not in sub.format_help().lower()


def test_a_missing_image_fails_at_once_with_status_2_before_torch_loads(tmp_path) -> None:
    script = textwrap.dedent("""
        import sys
        from taskcodec.apps.cli import main
        rc = main(["device", "--image", sys.argv[1]])
        assert "torch" not in sys.modules, "torch was imported before the image was checked"
        sys.exit(rc)
    """)
    missing = tmp_path / "missing.jpg"
    r = _python("-c", script, str(missing), timeout=60)
    assert r.returncode == cli.EXIT_USAGE, r.stdout + r.stderr
    assert str(missing) in r.stderr and "does not exist" in r.stderr
    r = _python("-m", "taskcodec", "device", "--image", "/missing.jpg")
    assert r.returncode == cli.EXIT_USAGE and "/missing.jpg" in r.stderr


def test_unknown_photo_names_and_codec_demo_images_are_checked_first(capsys) -> None:
    require("skimage")
    assert cli.main(["device", "--image", "no_such_photo"]) == cli.EXIT_USAGE
    assert "no_such_photo" in capsys.readouterr().err
    assert cli.main(["codec-demo", "--images", "/missing/photo.png"]) == cli.EXIT_USAGE
    assert "/missing/photo.png" in capsys.readouterr().err


def test_forced_mode_with_a_planner_is_a_usage_error(capsys) -> None:
    rc = cli.main(["device", "--cloud", "http://127.0.0.1:9", "--mode", "split"])
    assert rc == cli.EXIT_USAGE and "--mode" in capsys.readouterr().err


@pytest.mark.slow
def test_device_exit_status_without_an_edge(capsys) -> None:
    """No edge listening: a forced split cannot be honoured (the device answers instead) and
    a task the device cannot run fails; both exit 1. Device-only is honoured: 0."""
    for m in ("torch", "torchvision", "httpx", "fastapi", "uvicorn", "jsonschema", "PIL",
              "skimage"):
        require(m)
    from taskcodec.pipeline.procs import free_port

    require_weights()
    edge = f"http://127.0.0.1:{free_port()}"
    common = ["device", "--edge", edge, "--image", "coffee", "--threads", "1", "--timeout", "2"]
    assert cli.main([*common, "--mode", "split"]) == cli.EXIT_FAILED
    captured = capsys.readouterr()
    assert "FALLBACK" in captured.out and "not honoured" in captured.err
    assert cli.main([*common, "--mode", "device-only"]) == cli.EXIT_OK
    assert "espresso" in capsys.readouterr().out
    assert cli.main([*common, "--task", "image-to-text"]) == cli.EXIT_FAILED
    assert "ERROR" in capsys.readouterr().out
