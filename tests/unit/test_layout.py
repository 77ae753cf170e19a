"""The package's layering rules, checked on its source (the installed copy or the source tree).

- no import cycle between modules, function-level imports included;
- arrows point down the layers of the layout (README, "Layout"): a module imports only modules of
  its own layer or of layers below it; no library module imports ``taskcodec.apps``;
- below ``nn/``, only ``_device.py`` touches torch;
- no source file over 400 lines;
- every exception the package raises derives from ``TaskcodecError``;
- ``_core.pyi`` declares every public name of the compiled ``_core`` module.
"""

from __future__ import annotations

import ast
import builtins
import pathlib
from typing import Dict, Iterator, List, Optional, Set, Tuple

import pytest

import taskcodec
import taskcodec.errors
from taskcodec import _core

PKG = pathlib.Path(taskcodec.__file__).resolve().parent
MAX_LINES = 400

# Layers, bottom to top. A module may import from its own layer and the layers below.
LAYERS: List[Tuple[str, ...]] = [
    ("taskcodec.errors", "taskcodec._core", "taskcodec._tables", "taskcodec._cache"),
    ("taskcodec._device",),
    ("taskcodec.codec", "taskcodec"),  # the top-level package re-exports the codec layer
    ("taskcodec.nn", "taskcodec.split"),  # one model layer: nn's SplitCodec cuts with split.partition
    ("taskcodec.fl",),
    ("taskcodec.zoo",),
    ("taskcodec.pipeline",),
    ("taskcodec.apps", "taskcodec.__main__"),
]
BELOW_NN = ("taskcodec", "taskcodec.errors", "taskcodec._core", "taskcodec._device", "taskcodec.codec")

# Raising these is part of a Python protocol, not an error taskcodec reports.
PROTOCOL_EXCEPTIONS = {"NotImplementedError", "StopIteration", "KeyboardInterrupt", "SystemExit"}
# The web framework turns these into HTTP responses; they never reach a library caller.
FRAMEWORK_EXCEPTIONS = {"HTTPException", "RequestValidationError"}


def _modules() -> Dict[str, pathlib.Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(["taskcodec", *parts])] = path
    return out


MODULES = _modules()
# Compiled modules (with their .pyi stubs): imported like the others, parsed by nothing here.
EXTENSIONS = {"taskcodec." + p.name.split(".")[0] for p in PKG.glob("*.pyi")}


def _trees() -> Dict[str, ast.Module]:
    return {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


TREES = _trees()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not _is_package(module):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str) -> Iterator[Tuple[str, int]]:
    """(imported module, line) for every import in the module, at any depth."""
    for node in ast.walk(TREES[module]):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield (sub if sub in MODULES or sub in EXTENSIONS else target), node.lineno


def _internal_edges() -> Dict[str, Set[str]]:
    edges: Dict[str, Set[str]] = {m: set() for m in MODULES}
    for m in MODULES:
        for target, _ in _imports(m):
            if target in MODULES and target != m:
                edges[m].add(target)
    return edges


def _layer(module: str) -> Optional[int]:
    best: Optional[Tuple[int, int]] = None  # (prefix length, layer)
    for i, names in enumerate(LAYERS):
        for prefix in names:
            if module == prefix or (prefix != "taskcodec" and module.startswith(prefix + ".")):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), i)
    return None if best is None else best[1]


def test_every_module_has_a_layer() -> None:
    unplaced = [m for m in MODULES if _layer(m) is None]
    assert not unplaced, f"modules outside the layout's layers: {unplaced}"


def test_no_import_cycle() -> None:
    edges = _internal_edges()
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    cycles: List[List[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not cycles, f"modules that import each other in a circle: {cycles}"


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for m in MODULES:
        for target, line in _imports(m):
            if target not in MODULES:
                continue
            if _layer(target) > _layer(m):  # type: ignore[operator]
                wrong.append(f"{m}:{line} imports {target}")
    assert not wrong, "imports that point up the layers:\n" + "\n".join(wrong)


def test_split_imports_nothing_from_nn() -> None:
    """nn and split share a layer, but only one way: nn's SplitCodec cuts with split.partition,
    split never needs a codec."""
    wrong = [f"{m}:{line} imports {target}" for m in MODULES
             if m == "taskcodec.split" or m.startswith("taskcodec.split.")
             for target, line in _imports(m)
             if target == "taskcodec.nn" or target.startswith("taskcodec.nn.")]
    assert not wrong, "split imports nn:\n" + "\n".join(wrong)


def test_only_the_device_module_touches_torch_below_nn() -> None:
    wrong = []
    for m in MODULES:
        if m == "taskcodec._device" or _layer(m) is None or _layer(m) > _layer("taskcodec.codec"):  # type: ignore[operator]
            continue
        for target, line in _imports(m):
            if target == "torch" or target.startswith("torch."):
                wrong.append(f"{m}:{line} imports {target}")
    assert not wrong, "torch imported below nn/ outside taskcodec._device:\n" + "\n".join(wrong)


def test_no_source_file_over_400_lines() -> None:
    long = {m: len(p.read_text().splitlines()) for m, p in MODULES.items()}
    over = {m: n for m, n in long.items() if n > MAX_LINES}
    assert not over, f"source files over {MAX_LINES} lines: {over}"


def _taskcodec_error_names() -> Set[str]:
    names = {n for n, v in vars(taskcodec.errors).items()
             if isinstance(v, type) and issubclass(v, taskcodec.errors.TaskcodecError)}
    # classes defined in the package on top of the tree (resolved by base name, to a fixpoint)
    classes = [(node.name, {getattr(b, "id", getattr(b, "attr", None)) for b in node.bases})
               for tree in TREES.values() for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
    grew = True
    while grew:
        grew = False
        for name, bases in classes:
            if name not in names and bases & names:
                names.add(name)
                grew = True
    return names


def _raised_name(node: ast.Raise) -> Optional[str]:
    exc = node.exc
    if isinstance(exc, ast.Call):
        exc = exc.func
    if isinstance(exc, ast.Name):
        return exc.id
    if isinstance(exc, ast.Attribute):
        return exc.attr
    return None


def _raises(tree: ast.AST, function: str = "") -> Iterator[Tuple[ast.Raise, str]]:
    """Every ``raise`` with the name of the innermost function around it."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.Raise):
            yield child, function
        inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
        yield from _raises(child, inner)


def test_every_raised_exception_is_a_taskcodec_error() -> None:
    ours = _taskcodec_error_names()
    wrong = []
    for m, tree in TREES.items():
        for node, function in _raises(tree):
            name = None if node.exc is None else _raised_name(node)
            if name is None or name in ours or name in PROTOCOL_EXCEPTIONS or name in FRAMEWORK_EXCEPTIONS:
                continue
            if name == "AttributeError" and function == "__getattr__":
                continue  # PEP 562: a module's __getattr__ must raise AttributeError
            builtin = getattr(builtins, name, None)
            if (isinstance(builtin, type) and issubclass(builtin, BaseException)) or name[:1].isupper():
                wrong.append(f"{m}:{node.lineno} raises {name}")
    assert not wrong, "exceptions outside the TaskcodecError tree:\n" + "\n".join(sorted(wrong))


def test_core_stub_declares_every_public_name() -> None:
    stub = PKG / "_core.pyi"
    tree = ast.parse(stub.read_text())
    declared = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            declared.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            declared.add(node.target.id)
        elif isinstance(node, ast.Assign):
            declared.update(t.id for t in node.targets if isinstance(t, ast.Name))
    public = {n for n in dir(_core) if not n.startswith("_")}
    missing = sorted(public - declared)
    assert not missing, f"_core.pyi lacks {missing}"


@pytest.mark.parametrize("name", ["kbps", "kBps"])
def test_no_bandwidth_name_that_reads_as_kilobits(name: str) -> None:
    hits = [f"{m}:{i}" for m, p in MODULES.items()
            for i, line in enumerate(p.read_text().splitlines(), 1) if name in line]
    assert not hits, f"'{name}' (readers take it for kilobits) in: {hits}"
