"""Sphinx configuration of taskcodec's API reference (``make docs`` -> build/docs).

The reference documents the ``taskcodec`` that Python imports: ``make docs`` installs the
package from this tree first (``make install``); to build against the source tree with a
compiled ``_core`` next to it, put ``src`` on ``PYTHONPATH``.
"""

from __future__ import annotations

import importlib
import pkgutil

from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective

import taskcodec

project = "taskcodec"
author = "the taskcodec authors"
copyright = "2026, the taskcodec authors"
release = taskcodec.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
exclude_patterns = ["_build"]
templates_path: list = []
html_theme = "alabaster"
html_title = f"taskcodec {release} API reference"
html_static_path: list = []

# Docstrings: Google style ("Args:", "Returns:") and NumPy style both occur.
napoleon_google_docstring = True
napoleon_numpy_docstring = True
napoleon_use_rtype = False

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_default_options = {"show-inheritance": True}
# Every optional dependency is installed by `make venv`; nothing is mocked. List a module here
# only for a build machine that lacks it, e.g. autodoc_mock_imports = ["flwr"].
autodoc_mock_imports: list = []

print(f"taskcodec {release} from {taskcodec.__file__}")


def _excluded(package: str, module) -> list:
    """Members documented on another page, so that each object is described once.

    The error classes live on the errors page; a subpackage's members that the top level
    re-exports (``tc.encode`` is ``tc.codec.encode``) live on the top-level page.
    """
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    out = []
    for n in names:
        obj = getattr(module, n, None)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            out.append(n)
        elif package != "taskcodec" and obj is not None and getattr(taskcodec, n, None) is obj:
            out.append(n)
    return out


class PackageDirective(SphinxDirective):
    """``.. taskcodec-package:: taskcodec.zoo`` — the package, then each public submodule.

    ``:submodules:`` names the submodules to document after the package (space-separated);
    ``:submodules: *`` documents every public one found on disk, so modules that appear or
    vanish while the package is reorganised need no edit here. Error classes are documented
    on the errors page, and a subpackage's members that the top level re-exports on the
    top-level page.
    """

    required_arguments = 1
    option_spec = {"submodules": directives.unchanged}

    def _automodule(self, name: str) -> list:
        module = importlib.import_module(name)
        lines = [f".. automodule:: {name}", "   :members:"]
        skip = _excluded(name, module)
        if skip:
            lines.append(f"   :exclude-members: {', '.join(skip)}")
        return lines + [""]

    def run(self):
        name = self.arguments[0]
        package = importlib.import_module(name)
        wanted = (self.options.get("submodules") or "").split()
        if wanted == ["*"]:
            wanted = sorted(m.name for m in pkgutil.iter_modules(package.__path__)
                            if not m.name.startswith("_"))
        lines = self._automodule(name)
        for sub in wanted:
            full = f"{name}.{sub}"
            lines += [f"``{full}``", "-" * (len(full) + 4), ""] + self._automodule(full)
        return self.parse_text_to_nodes("\n".join(lines), allow_section_headings=True)


def setup(app):
    app.add_directive("taskcodec-package", PackageDirective)
    return {"parallel_read_safe": True}
