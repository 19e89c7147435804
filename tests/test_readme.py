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
