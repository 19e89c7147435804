"""The package's structure: the core never depends on the applications, and docs cite real files."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "syngeo"
CORE_FILES = sorted(p for p in PACKAGE.rglob("*.py") if "app" not in p.relative_to(PACKAGE).parts)


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_never_imports_the_applications(path):
    app = sorted(
        m for m in _imported_modules(path) if m == "syngeo.app" or m.startswith("syngeo.app.")
    )
    assert not app, (
        f"{path.relative_to(ROOT)} imports {app}: the core must not depend on syngeo.app"
    )


def test_the_layout_check_sees_a_planted_violation(tmp_path):
    planted = tmp_path / "core_module.py"
    planted.write_text("from syngeo.app.report import write_report\n", encoding="utf-8")
    assert "syngeo.app.report" in _imported_modules(planted)


SOURCES = (
    sorted(PACKAGE.rglob("*.py")) + sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_documentation_cites_only_files_of_the_project(path):
    text = path.read_text(encoding="utf-8")
    assert "THEORY.md" not in text, (
        f"{path.relative_to(ROOT)} cites THEORY.md, which users do not have"
    )
    assert "../shared" not in text
    for cited in set(re.findall(r"docs/([\w.-]+\.md)", text)):
        assert (ROOT / "docs" / cited).is_file(), (
            f"{path.relative_to(ROOT)} cites missing docs/{cited}"
        )


def test_theory_page_has_the_sections_docstrings_cite():
    theory = (ROOT / "docs" / "theory.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^## (\d+)\.", theory, flags=re.M))
    cited: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for ref in re.findall(r"docs/theory\.md,? §(\d+)", path.read_text(encoding="utf-8")):
            cited.add(ref)
    assert cited, "no docstring cites docs/theory.md"
    assert cited <= headings, f"cited sections {sorted(cited - headings)} are missing"
