"""``syngeo --help`` (and ``import syngeo``) must not import the heavy libraries.

The command line answers ``--help`` from typer and rich alone: torch, pandas, matplotlib and SciPy
take seconds to import and are loaded inside the command that needs them. Each check runs a fresh
interpreter (``sys.modules`` of the test process already holds everything) and lists which of
the heavy modules the run imported; it does not time anything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import syngeo

HEAVY = ("torch", "pandas", "matplotlib", "scipy", "sklearn", "distributed", "safetensors")
SRC = Path(__file__).resolve().parents[1] / "src"

_PROBE = """
import json, sys
{code}
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def _heavy_modules_after(code: str) -> list[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE.format(code=code, heavy=HEAVY)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _help(argv: list[str]) -> str:
    # main() always ends with SystemExit; --help prints to stdout, which is discarded here
    return (
        "import contextlib, io\n"
        "from syngeo.app.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        f"        main({argv!r})\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, exc.code\n"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        ["reproduce", "--help"],
        ["fit-spines", "--help"],
        ["power", "--help"],
        ["finetune", "--help"],
    ],
    ids=lambda a: " ".join(a),
)
def test_help_imports_no_heavy_library(argv):
    assert _heavy_modules_after(_help(argv)) == []


def test_import_syngeo_is_lazy_but_complete():
    assert _heavy_modules_after("import syngeo") == []
    # the probe can fail: touching one public name loads its module (torch for the optimiser)
    assert "torch" in _heavy_modules_after("import syngeo; syngeo.MirrorDescent")
    # in a fresh interpreter, before any name was touched: dir() lists the public names, and
    # the re-exported submodule is an attribute (not only importable with `from syngeo import`)
    fresh = (
        "import syngeo\n"
        "assert set(syngeo.__all__) <= set(dir(syngeo)), set(syngeo.__all__) - set(dir(syngeo))\n"
        "assert callable(syngeo.datasets.dorkenwald2022)\n"
    )
    assert "pandas" in _heavy_modules_after(fresh)


def test_every_public_name_resolves():
    for name in syngeo.__all__:
        assert getattr(syngeo, name) is not None, name
    assert set(syngeo.__all__) <= set(dir(syngeo))
    from syngeo import MirrorDescent, datasets
    from syngeo.optim import MirrorDescent as defined

    assert MirrorDescent is defined
    from importlib import metadata

    assert syngeo.__version__ == metadata.version("syngeo")  # the installed package's metadata
    assert callable(datasets.dorkenwald2022)
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        syngeo.not_a_name
