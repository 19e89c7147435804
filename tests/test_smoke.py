"""The package imports cheaply and exposes its public API."""

import subprocess
import sys

import syngeo


def test_version_is_a_string():
    assert isinstance(syngeo.__version__, str) and syngeo.__version__.count(".") == 2


def test_one_version_string_from_the_package_metadata():
    """``syngeo.__version__`` is the installed metadata's, and no source file repeats it."""
    import importlib.metadata
    import re
    from pathlib import Path

    assert syngeo.__version__ == importlib.metadata.version("syngeo")
    root = Path(__file__).resolve().parents[1]
    declared = re.search(r'^version = "([^"]+)"', (root / "pyproject.toml").read_text(), re.M)
    assert declared, "pyproject.toml declares no version"
    literal = re.compile(rf"[\"']v?{re.escape(declared.group(1))}[\"']")
    repeated = [
        str(path.relative_to(root))
        for path in (root / "src").rglob("*.py")
        if literal.search(path.read_text(encoding="utf-8"))
    ]
    assert repeated == [], f"the version is written out in {repeated}: use syngeo.__version__"


def test_every_public_name_resolves():
    missing = [name for name in syngeo.__all__ if not hasattr(syngeo, name)]
    assert missing == []


def test_import_does_not_pull_plotting_or_cluster_libraries():
    code = "import sys, syngeo; print(sorted(m for m in ('matplotlib', 'dask', 'distributed') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_names_do_not_shadow_submodules():
    import importlib
    import pkgutil

    submodules = {m.name for m in pkgutil.iter_modules(syngeo.__path__)}
    shadowed = sorted(set(syngeo.__all__) & submodules)
    assert shadowed == []
    gaussianity = importlib.import_module("syngeo.gaussianity")
    assert syngeo.gaussianity is gaussianity
