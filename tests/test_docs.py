"""The manual stays true: its worked examples run, the CLI reference matches the parser,
its links resolve, and the README stays short."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = sorted(p.name for p in (DOCS / "extending").glob("*.md") if p.name != "index.md")


def python_blocks(page: Path) -> str:
    return "\n\n".join(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S))


@pytest.mark.parametrize("page", EXAMPLES)
def test_every_worked_example_runs(page, tmp_path):
    code = python_blocks(DOCS / "extending" / page)
    assert code, f"docs/extending/{page} has no worked example"
    env = {**os.environ, "SPIKEBENCH_CACHE": os.environ.get("SPIKEBENCH_CACHE", ""),
           "OMP_NUM_THREADS": "2"}
    if not env["SPIKEBENCH_CACHE"]:
        del env["SPIKEBENCH_CACHE"]
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_cli_reference_is_generated_from_the_parser():
    from spikebench.clidoc import cli_reference

    page = (DOCS / "cli.md").read_text()
    assert page == cli_reference(), (
        "docs/cli.md drifted from the parser; regenerate it: "
        "make docs")


def test_every_link_in_the_manual_resolves():
    broken = []
    for page in [*DOCS.rglob("*.md"), ROOT / "README.md"]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_mkdocs_nav_lists_every_page():
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    listed = set(re.findall(r":\s*(\S+\.md)\s*$", nav, flags=re.M))
    assert pages == listed, pages ^ listed


def test_the_readme_is_short_and_points_into_the_manual():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    assert "make run" in readme and "make test" in readme and "docs/" in readme


def test_no_source_docstring_points_outside_the_repository():
    src = Path(__import__("spikebench").__file__).parent
    outside = [f"{p.relative_to(src)}:{i}" for p in src.rglob("*.py")
               for i, line in enumerate(p.read_text().splitlines(), 1)
               if "../shared/reference" in line]
    assert not outside, outside
