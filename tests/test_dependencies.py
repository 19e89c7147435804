"""Every module syngeo imports is the standard library, syngeo itself or a declared dependency.

``pip install syngeo`` installs only ``[project] dependencies``; a module that is importable in
the development environment because some other package pulled it in (``click`` came with dask,
until it did not) crashes a plain install. This test reads every ``import`` in ``src/syngeo``
and checks its top-level module against ``pyproject.toml``:

* a required dependency may be imported anywhere;
* an optional one (``[project.optional-dependencies]``) only inside a ``try`` whose handlers
  catch ``ImportError`` (or ``ModuleNotFoundError``), so that its absence becomes a clear message.

The scan itself is tested on planted sources (``import click``), so that it can fail.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "syngeo"

#: Import names that differ from the distribution name and may be missing from the environment
#: (``packages_distributions`` covers the installed ones).
KNOWN_IMPORT_NAMES = {"sklearn": "scikit-learn", "yaml": "pyyaml", "PIL": "pillow"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(requirement: str) -> set[str]:
    """``"dask[distributed]>=2024.1"`` → {"dask", "distributed"} (an extra of a requirement
    names the distributions it brings)."""
    match = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(?:\[([^\]]*)\])?", requirement)
    assert match, requirement
    names = {_normalise(match.group(1))}
    if match.group(2):
        names |= {_normalise(x) for x in match.group(2).split(",") if x.strip()}
    return names


def declared_dependencies() -> tuple[set[str], set[str]]:
    """(required, optional) distribution names from pyproject.toml, normalised."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = set().union(*(_requirement_names(r) for r in project["dependencies"]))
    optional: set[str] = set()
    for extra, requirements in project.get("optional-dependencies", {}).items():
        if extra == "dev":  # test tools: never imported by the package
            continue
        for r in requirements:
            optional |= _requirement_names(r)
    return required, optional - required


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def distributions_of(module: str) -> set[str]:
    """The distributions that provide top-level ``module`` (normalised names)."""
    found = _packages_distributions().get(module, [])
    names = {_normalise(d) for d in found}
    names.add(_normalise(KNOWN_IMPORT_NAMES.get(module, module)))
    return names


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(
        isinstance(t, ast.Name) and t.id in {"ImportError", "ModuleNotFoundError", "Exception"}
        for t in types
    )


def imports_of(source: str, filename: str = "<source>") -> list[tuple[str, int, bool]]:
    """(top-level module, line, guarded by ``try/except ImportError``) for every absolute import."""
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, guarded: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend((a.name.split(".")[0], node.lineno, guarded) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], node.lineno, guarded))
        if isinstance(node, ast.Try):
            body_guarded = guarded or any(_catches_import_error(h) for h in node.handlers)
            for child in node.body:
                visit(child, body_guarded)
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(child, guarded)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    visit(ast.parse(source, filename), False)
    return found


def undeclared_imports(sources: dict[str, str]) -> list[str]:
    """Problems found in ``{filename: source}``: one line per offending import."""
    required, optional = declared_dependencies()
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    problems = []
    for filename, source in sources.items():
        for module, line, guarded in imports_of(source, filename):
            if module in stdlib or module == "syngeo":
                continue
            dists = distributions_of(module)
            if dists & required:
                continue
            if dists & optional:
                if not guarded:
                    problems.append(
                        f"{filename}:{line}: {module} is an optional dependency; import it "
                        "inside try/except ImportError with a message naming the extra"
                    )
                continue
            problems.append(
                f"{filename}:{line}: {module} is not a declared dependency of syngeo "
                f"(pyproject.toml [project] dependencies)"
            )
    return problems


def package_sources() -> dict[str, str]:
    return {
        str(path.relative_to(ROOT)): path.read_text(encoding="utf-8")
        for path in sorted(SRC.rglob("*.py"))
    }


def test_the_package_has_sources_to_scan():
    sources = package_sources()
    assert len(sources) > 20
    modules = {m for text in sources.values() for m, _, _ in imports_of(text)}
    assert {"torch", "numpy", "typer", "syngeo"} <= modules


def test_every_import_is_stdlib_syngeo_or_declared():
    assert undeclared_imports(package_sources()) == []


@pytest.mark.parametrize(
    "source",
    [
        "import click\n",
        "from click import exceptions\n",
        "def main():\n    import click.exceptions\n",
        "import yaml\n",
        # a guard only helps optional dependencies, never an undeclared one
        "try:\n    import click\nexcept ImportError:\n    click = None\n",
    ],
)
def test_an_undeclared_import_is_caught(source):
    problems = undeclared_imports({"planted.py": source})
    assert len(problems) == 1 and "not a declared dependency" in problems[0], problems


@pytest.mark.parametrize(
    "source",
    [
        "import distributed\n",
        "def run():\n    from distributed import Client\n",
        "try:\n    import dask\nexcept ValueError:\n    pass\n",
    ],
)
def test_an_unguarded_optional_import_is_caught(source):
    problems = undeclared_imports({"planted.py": source})
    assert len(problems) == 1 and "optional dependency" in problems[0], problems


@pytest.mark.parametrize(
    "source",
    [
        "import os, json\nfrom pathlib import Path\n",
        "import numpy as np\nfrom scipy import stats\nimport sklearn.linear_model\n",
        "from syngeo.errors import InputError\nfrom . import sibling\n",
        "try:\n    from distributed import Client\nexcept ImportError:\n    Client = None\n",
        "def run():\n    try:\n        import dask\n    except ModuleNotFoundError:\n        raise\n",
    ],
)
def test_declared_and_guarded_imports_pass(source):
    assert undeclared_imports({"fine.py": source}) == []


def test_requirement_names():
    assert _requirement_names("dask[distributed]>=2024.1") == {"dask", "distributed"}
    assert _requirement_names("scikit-learn>=1.3") == {"scikit-learn"}
    assert distributions_of("sklearn") >= {"scikit-learn"}
