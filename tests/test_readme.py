"""The README's library tour runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_library_tour_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    assert blocks, "README has no python block"
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    # the tour ends by printing N* = T γ2²/γ3² for γ2 = 1, γ3 = 0.03, T = 1
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("1111.11")
    assert namespace["proj"].converged


TEXT = README.read_text(encoding="utf-8")
ROOT = README.parent


def test_extras_are_installed_from_the_source_folder():
    # syngeo is installed from its folder: `pip install "syngeo[vision]"` would look on PyPI
    extras = re.findall(r"pip install[^`\n]*\[(\w+)\]", TEXT)
    assert {"vision", "cluster"} <= set(extras)
    for line in re.findall(r"pip install[^`\n]*\[\w+\][^`\n]*", TEXT):
        assert re.search(r'pip install -e "\.\[\w+(,\w+)*\]"', line), line


def test_the_torch_build_the_readme_names_is_the_one_the_makefile_installs():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    version = re.search(r"^TORCH\s*\?=\s*(\S+)", makefile, flags=re.M)[1]
    index = re.search(r"^TORCH_INDEX\s*\?=\s*(\S+)", makefile, flags=re.M)[1]
    assert f"torch=={version}+cpu" in TEXT and "torch==$(TORCH)+cpu" in makefile
    assert "CPU index" in TEXT and index == "https://download.pytorch.org/whl/cpu"
    # the CPU wheel goes in before syngeo, so that `torch>=2.2` is satisfied by it
    install = makefile[makefile.index("$(STAMP):") :]
    assert install.index("$(TORCH_REQ)") < install.index('-e ".[dev,cluster]"')
    assert "CUDA build" in TEXT  # what a plain `pip install -e .` gets on Linux


def test_every_path_the_readme_names_is_in_the_repository():
    linked = re.findall(r"\]\(([^)#]+)\)", TEXT)
    quoted = re.findall(r"`((?:docs|src|tests|scripts|benchmarks|\.ci)/[\w./*-]*)`", TEXT)
    assert linked and quoted
    for path in linked + quoted:
        assert not path.startswith(("/", "..", "http")) or path.startswith("http"), path
        if path.startswith("http"):
            continue
        assert list(ROOT.glob(path.rstrip("/"))), f"README names {path}, not in the repository"
    for outside in ("../", "/work/", "shared/", "THEORY.md", "seeds/"):
        assert outside not in TEXT, outside
