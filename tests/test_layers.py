"""The package's layers import only downward (DESIGN: one home per concern).

Every ``spikebench`` module is parsed (not imported); each import of another spikebench
package must name a package of a lower layer than its own (or its own package)."""

from __future__ import annotations

import ast
from pathlib import Path

import spikebench

ROOT = Path(spikebench.__file__).parent
# top to bottom; a package may import its own modules and any package below its layer
LAYERS = [
    ("clidoc",),
    ("cli", "pytest_plugin"),
    ("commands",),
    ("neurobench_adapter",),
    ("suites",),
    ("studies",),
    ("report",),
    ("papers",),
    ("engine",),
    ("training",),
    ("attacks",),
    ("metrics",),
    ("analysis",),
    ("learning_rules", "nir_io"),
    ("models",),
    ("neurons",),
    ("datasets",),
    ("tracking",),
    ("sparse", "io", "progress", "registry", "config", "checks"),
    ("native",),
    ("errors", "__init__"),
]
LEVEL = {name: i for i, names in enumerate(LAYERS) for name in names}


def _package(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "spikebench":
                out.append((node.lineno, parts[1] if len(parts) > 1 else "__init__"))
    return out


def test_every_package_has_a_layer():
    packages = {_package(p) for p in ROOT.rglob("*.py")}
    assert packages <= set(LEVEL), sorted(packages - set(LEVEL))


def test_imports_point_downward():
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        own = _package(path)
        for line, target in _imports(path):
            if target != own and LEVEL[target] <= LEVEL[own]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_every_package_says_what_lives_there():
    for init in ROOT.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 40, f"{init.parent.name}/__init__.py has no docstring"


def test_no_source_file_is_over_450_lines():
    long = {str(p.relative_to(ROOT)): n for p in sorted(ROOT.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > 450}
    assert not long, f"split these files (at most 450 lines each): {long}"
