"""The modules form layers: each imports only modules listed before it in :data:`LAYERS`.

Imports inside functions count too: a deferred import hides a cycle from Python, not from a
reader. The order follows the data's flow (README, "Project layout"): errors and pure tensor
functions, then configuration and data, inference and evaluation (they run any model that maps
``(x, edge_index)`` to ``(logits, hidden)``, so they come before the models), the models and the
training loop, teachers and the student, reports and comparisons, and on top the Python API and
the command line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mskd

LAYERS = (
    "errors",
    "losses",
    "attention",
    "sparse",
    "convs",
    "runs",
    "distributed",
    "context",
    "sampling",
    "config",
    "ogb_data",
    "data",
    "plots",
    "inference",
    "evaluate",
    "models",
    "selection",
    "train",
    "targets",
    "scale",
    "teachers",
    "distill",
    "report",
    "deploy",
    "comparison",
    "bench",
    "options",
    "api",
    "cli",
)

PACKAGE = Path(mskd.__file__).parent


def imported_modules(path: Path, package: str, modules: set[str]) -> set[str]:
    """Sibling modules ``path`` imports anywhere in its body, functions included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                parts = node.module.split(".") if node.module else []
            elif node.level == 0 and node.module and node.module.split(".")[0] == package:
                parts = node.module.split(".")[1:]
            else:
                continue
            if parts:
                found.add(parts[0])
            else:  # from . import a, b: only the names that are modules
                found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == package and len(parts) > 1:
                    found.add(parts[1])
    return found & modules


def layer_violations(package_dir: Path, layers: tuple[str, ...]) -> list[str]:
    """``"a imports b"`` for every import of a module at or above the importer's own layer.

    ``__init__`` is the package's face: it may re-export from any layer and is not checked; the
    modules may take ``__version__`` from it, which is no module and so no edge.
    """
    modules = {p.stem for p in package_dir.glob("*.py")} - {"__init__"}
    rank = {m: i for i, m in enumerate(layers)}
    out = []
    for m in sorted(modules):
        for target in sorted(imported_modules(package_dir / f"{m}.py", package_dir.name, modules)):
            if target != m and rank[target] >= rank[m]:
                out.append(f"{m} imports {target}")
    return out


def test_every_module_has_a_layer():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert sorted(modules - set(LAYERS)) == [], "add new modules to LAYERS"
    assert sorted(set(LAYERS) - modules) == []
    assert len(set(LAYERS)) == len(LAYERS)


def test_modules_import_only_earlier_layers():
    assert layer_violations(PACKAGE, LAYERS) == []


def test_the_check_sees_imports_inside_functions(tmp_path: Path):
    pkg = tmp_path / "pkgx"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("__version__ = '0'\n")
    (pkg / "low.py").write_text("from . import __version__\n\ndef f():\n    from .high import g\n")
    (pkg / "high.py").write_text("from .low import f\nimport pkgx.low\n\ndef g():\n    pass\n")
    assert layer_violations(pkg, ("low", "high")) == ["low imports high"]
    (pkg / "low.py").write_text("def f():\n    import pkgx.high\n")
    assert layer_violations(pkg, ("low", "high")) == ["low imports high"]
    assert layer_violations(pkg, ("high", "low")) == ["high imports low"]
