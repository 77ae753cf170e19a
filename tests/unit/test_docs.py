"""The documents hold: every ```python block runs as written, and every file they cite exists.

- Each ```python block in README.md and docs/*.md is one test case, id ``file:line`` (the line
  of its opening fence). It runs in a fresh Python process in an empty folder (warnings that
  taskcodec or the block raise are errors), and a failure shows the block's location (the
  traceback's line numbers are the markdown file's). ```py and ```text blocks are
  illustrations and do not run.
- A block that cannot run here (it needs a CUDA device, running servers or a download) says so
  on the line before its fence, ``<!-- skip: needs a CUDA device -->``, and is reported as
  skipped with that reason. ``needs a CUDA device`` blocks run when a device is present and
  carry the ``gpu`` marker; any other reason to skip is a skip that CI counts as a failure, so
  prefer blocks that set up what they need.
- Relative links and backticked repository paths (``docs/…``, ``src/…``, ``tests/…``,
  ``bench/…``, ``scripts/…``, top-level files such as ``CONTRIBUTING.md``) in README.md,
  CONTRIBUTING.md, CHANGELOG.md and docs/*.md name files that exist.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest
from ci_support import missing

ROOT = pathlib.Path(__file__).resolve().parents[2]

if not (ROOT / "README.md").exists():  # tests run against an installed wheel from elsewhere
    missing("README.md not found next to the tests", "run the tests from a source checkout")


def _docs(*top: str) -> list[pathlib.Path]:
    files = [ROOT / name for name in top if (ROOT / name).exists()]
    return files + sorted((ROOT / "docs").glob("*.md"))


RUN_FILES = _docs("README.md")
LINK_FILES = _docs("README.md", "CONTRIBUTING.md", "CHANGELOG.md")

FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
SKIP = re.compile(r"^\s*<!--\s*skip:\s*(.*?)\s*-->\s*$")
NEEDS_CUDA = "needs a CUDA device"
BLOCK_TIMEOUT_S = 600

# What a block must print, beyond running: (file, a line of the block, expected substrings).
EXPECTED_OUTPUT = [
    ("README.md", "tc.CdfTable.from_bytes(table.to_bytes())",
     ["bytes for 131072 symbols (8, 64, 16, 16)",
      "table fingerprint"]),  # the TableMismatchError branch ran
]

# Warnings raised by taskcodec or by the block itself are errors, as in the test suite
# (pyproject's filterwarnings); those raised inside dependencies (compressai's torch.jit.script
# at import, Flower's use of deprecated click helpers) are shown, not fatal.
PRELUDE = textwrap.dedent(
    r"""
    import sys, warnings
    warnings.simplefilter("default")
    warnings.filterwarnings("error", module=r"(taskcodec(\..*)?|__main__)$")
    path, first, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with open(path, encoding="utf-8") as f:
        source = f.read().splitlines(keepends=True)
    code = "\n" * (first - 1) + "".join(source[first - 1 : last])
    sys.argv = [path]
    exec(compile(code, path, "exec"), {"__name__": "__main__"})
    """
)


@dataclasses.dataclass(frozen=True)
class Block:
    path: pathlib.Path
    fence_line: int  # 1-based line of the opening fence
    first: int  # 1-based first and last line of the code
    last: int  # (last < first: an empty block)
    code: str
    skip: str | None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.fence_line}"


def _fenced(lines: list[str]):
    """(language, fence line index, body line indices) of every fenced block; 0-based."""
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        marker, lang, start = m.group(2), m.group(3), i
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(marker):
            i += 1
        yield lang, start, range(start + 1, i)
        i += 1


def python_blocks(path: pathlib.Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    for lang, start, body in _fenced(lines):
        if lang != "python":
            continue
        prev = start - 1
        while prev >= 0 and not lines[prev].strip():
            prev -= 1
        m = SKIP.match(lines[prev]) if prev >= 0 else None
        code = "\n".join(lines[j] for j in body) + "\n"
        first = body.start + 1
        blocks.append(Block(path, start + 1, first, body.stop, code,
                            m.group(1) if m else None))
    return blocks


BLOCKS = [b for path in RUN_FILES for b in python_blocks(path)]


def _cuda_device() -> bool:
    try:
        import taskcodec

        return taskcodec.has_cuda()
    except Exception:  # an import failure shows up in the blocks themselves
        return False


def _env() -> dict:
    """This process's import path for the child, so it imports the same taskcodec."""
    import taskcodec

    env = dict(os.environ)
    here = str(pathlib.Path(taskcodec.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    env.setdefault("MPLBACKEND", "Agg")
    return env


def _cases() -> list:
    """One case per block; those that need a CUDA device carry the ``gpu`` marker."""
    return [pytest.param(b, id=b.where, marks=[pytest.mark.gpu] if b.skip is not None
                         and b.skip.startswith(NEEDS_CUDA) else []) for b in BLOCKS]


@pytest.mark.parametrize("block", _cases())
def test_python_block_runs(block: Block, tmp_path: pathlib.Path) -> None:
    if block.skip is not None and not (block.skip.startswith(NEEDS_CUDA) and _cuda_device()):
        pytest.skip(f"{block.where}: {block.skip}")
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE, str(block.path), str(block.first), str(block.last)],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"the python block at {block.where} failed (exit status {proc.returncode}):\n"
            f"{proc.stderr[-4000:]}",
            pytrace=False,
        )
    for name, marker, expected in EXPECTED_OUTPUT:
        if block.path.name == name and marker in block.code:
            absent = [text for text in expected if text not in proc.stdout]
            assert not absent, (
                f"{block.where} ran but did not print {absent}; it printed:\n{proc.stdout}"
            )


@pytest.mark.parametrize("name, marker, expected", EXPECTED_OUTPUT,
                         ids=[f"{n}:{m}" for n, m, _ in EXPECTED_OUTPUT])
def test_output_checks_find_their_block(name: str, marker: str, expected: list) -> None:
    """An edited example must not silently lose the checks on what it prints."""
    hits = [b.where for b in BLOCKS if b.path.name == name and marker in b.code]
    assert len(hits) == 1, f"{name}: expected one python block containing {marker!r}, found {hits}"
    block = next(b for b in BLOCKS if b.where == hits[0])
    assert block.skip is None, f"{block.where} holds output checks and must run, not skip"


def test_blocks_are_found() -> None:
    assert any(b.path.name == "README.md" for b in BLOCKS), "the README has no python example"


# --- cited files -----------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
TOP_FILES = {"README.md", "CONTRIBUTING.md", "CHANGELOG.md", "DESIGN.md", "LICENSE",
             "Makefile", "pyproject.toml", "requirements-dev.txt", "CMakeLists.txt"}
ROOTS = ("docs/", "bench/", "src/", "tests/", "scripts/", "csrc/", "bindings/", "cmake/", ".ci/")
# What the commands write (not in the repository): output folders named in the docs.
OUTPUTS = ("bench/results/", "build/", "dist/")
# Markdown files named in running text ("as DESIGN.md says"), backticked or not.
BARE_MD = re.compile(r"(?<![\w/.-])([A-Z][A-Z_]*\.md)\b")


def _expand(token: str) -> list[str]:
    """Brace alternatives (``csrc/{util,table}/``) into single paths."""
    m = re.search(r"\{([^{}]*)\}", token)
    if not m:
        return [token]
    return [p for alt in m.group(1).split(",")
            for p in _expand(token[: m.start()] + alt + token[m.end():])]


def _exists(path: str, base: pathlib.Path) -> bool:
    target = (base / path).resolve() if not path.startswith("/") else pathlib.Path(path)
    return bool(glob.glob(str(target))) if any(c in path for c in "*?[") else target.exists()


def cited_paths(path: pathlib.Path) -> list[tuple[int, str, pathlib.Path]]:
    """(line, cited path, folder it is relative to) for every citation outside code blocks."""
    lines = path.read_text(encoding="utf-8").splitlines()
    in_fence = set()
    for _lang, start, body in _fenced(lines):
        in_fence.update(range(start, body.stop + 1))
    found = []
    for i, line in enumerate(lines):
        if i in in_fence:
            continue
        for m in LINK.finditer(line):
            target = m.group(1).split("#", 1)[0]
            if target and not re.match(r"^[a-z][a-z0-9+.-]*:", target):
                found.append((i + 1, target, path.parent))
        for m in INLINE_CODE.finditer(line):
            for token in m.group(2).split():
                token = token.strip("\"'.,;:()[]").split("#", 1)[0]
                if token.startswith("./"):
                    token = token[2:]
                if token in TOP_FILES or (token.startswith(ROOTS) and "<" not in token
                                          and "$" not in token and "…" not in token):
                    if not token.startswith(OUTPUTS):
                        found.extend((i + 1, p, ROOT) for p in _expand(token))
        for m in BARE_MD.finditer(INLINE_CODE.sub(lambda c: " " * len(c.group(0)), line)):
            found.append((i + 1, m.group(1), ROOT))
    return found


@pytest.mark.parametrize("doc", LINK_FILES, ids=[p.relative_to(ROOT).as_posix() for p in LINK_FILES])
def test_cited_files_exist(doc: pathlib.Path) -> None:
    rel = doc.relative_to(ROOT).as_posix()
    missing = [f"{rel}:{line}: {cited}" for line, cited, base in cited_paths(doc)
               if not _exists(cited, base)]
    assert not missing, "files cited but not in the repository:\n  " + "\n  ".join(missing)


def test_citation_scanner_sees_paths() -> None:
    """The scanner itself: links, backticked paths, braces and bare document names."""
    sample = ROOT / "README.md"
    cited = {c for _, c, _ in cited_paths(sample)}
    assert "docs/format.md" in cited
    assert _expand("csrc/{util,table}/") == ["csrc/util/", "csrc/table/"]
