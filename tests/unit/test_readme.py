"""The README's Python example runs as written (and prints what it claims)."""

from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def _python_blocks() -> list:
    if not README.exists():  # tests run against an installed wheel from a source checkout
        pytest.skip("README.md not found next to the tests")
    # ```python blocks run here; ```py blocks are illustrations that need other machines.
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


# The federated-learning example imports Flower, whose CLI module calls a click helper that
# click 8.2+ marks deprecated (a warning inside flwr, not in taskcodec).
@pytest.mark.filterwarnings("ignore:'click.utils.get_.*_stream' is deprecated:DeprecationWarning")
def test_readme_example_runs(capsys: pytest.CaptureFixture) -> None:
    blocks = _python_blocks()
    assert blocks, "the README has no Python example"
    for code in blocks:
        exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert "bytes for 131072 symbols (8, 64, 16, 16)" in out
    assert "table fingerprint" in out  # the TableMismatchError branch ran
