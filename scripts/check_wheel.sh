#!/usr/bin/env bash
# Install check: build the wheel, install it WITHOUT extras into a clean virtual environment and
# run the command line from that install (`syngeo --help`, `syngeo demo`, `syngeo infer`).
#
# The test suite runs from an editable install with the dev and cluster extras; a module that
# only an extra (or a package pulled in by luck) provides passes there and crashes a plain
# `pip install syngeo`. This script is what a user gets. Any failing step fails the script.
#
# Usage: scripts/check_wheel.sh            (PY=python3.11 scripts/check_wheel.sh to pick Python)
#        KEEP=1 scripts/check_wheel.sh     keeps the work folder for inspection
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PY:-python3}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/syngeo-wheel.XXXXXX")
cleanup() { if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT
step() { printf '\n== check-wheel: %s\n' "$*"; }

step "build the wheel"
"$PY" -m pip wheel --no-deps --quiet --wheel-dir "$WORK/dist" "$ROOT"
WHEEL=$(ls "$WORK"/dist/syngeo-*.whl)
echo "$WHEEL"

step "clean virtual environment"
"$PY" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
SYNGEO="$WORK/venv/bin/syngeo"
# The CPU build of torch first, as the Makefile installs it (TORCH_REQ and TORCH_INDEX come from
# `make check-wheel`): a bare `torch` requirement would pull a multi-GB CUDA build on Linux.
TORCH_REQ=${TORCH_REQ:-torch==2.13.0}
if [ -n "${TORCH_INDEX:-}" ]; then
  "$VPY" -m pip install --quiet "$TORCH_REQ" --extra-index-url "$TORCH_INDEX"
else
  "$VPY" -m pip install --quiet "$TORCH_REQ"
fi
step "install the wheel without extras"
"$VPY" -m pip install --quiet "$WHEEL"
"$VPY" -m pip check

# Run from an empty folder, so that the source tree cannot shadow the installed package.
mkdir "$WORK/run"
cd "$WORK/run"
"$VPY" - <<'PY'
import pathlib, syngeo
path = pathlib.Path(syngeo.__file__).resolve()
assert "site-packages" in path.parts, f"syngeo imported from {path}, not from the install"
print(f"syngeo {syngeo.__version__} from {path.parent}")
PY

step "bundled data ship inside the wheel"
"$VPY" - <<'PY'
import hashlib
from syngeo import datasets
path = datasets.dorkenwald2022_path()
assert "site-packages" in path.parts, f"data read from {path}, not from the install"
assert hashlib.md5(path.read_bytes()).hexdigest() == datasets.DORKENWALD2022_MD5
assert (path.parent / "SOURCE.md").is_file(), "the data's SOURCE.md is missing from the wheel"
print(f"{len(datasets.dorkenwald2022())} synapses from {path.name}")
PY

step "syngeo --help"
"$SYNGEO" --help
step "syngeo --version"
VERSION=$("$SYNGEO" --version)
echo "$VERSION"
EXPECTED=$("$VPY" -c "import importlib.metadata as m; print('syngeo', m.version('syngeo'))")
[ "$VERSION" = "$EXPECTED" ] || { echo "version mismatch: '$VERSION' != '$EXPECTED'"; exit 1; }

step "syngeo demo"
"$SYNGEO" demo --out "$WORK/demo" --bootstrap 10
for f in summary.json report.md results.csv results.parquet; do
    [ -s "$WORK/demo/$f" ] || { echo "syngeo demo did not write $f"; exit 1; }
done

step "syngeo infer on a small CSV file"
# Weights whose change is Gaussian in the dual space of the 3-norm (so the truth is p = 3).
"$VPY" - <<'PY'
import numpy as np
g = np.random.default_rng(0)
w0 = g.normal(0, 0.1, 2000)
u = np.sign(w0) * w0**2 + 1e-3 * g.normal(size=w0.size)
w1 = np.sign(u) * np.abs(u) ** 0.5
for name, w in (("before.csv", w0), ("after.csv", w1)):
    with open(name, "w") as f:
        f.write("synapse,weight\n")
        f.writelines(f"s{i},{float(x)!r}\n" for i, x in enumerate(w))
PY
"$SYNGEO" infer before.csv after.csv --column weight --bootstrap 10 --out "$WORK/infer"
"$SYNGEO" infer before.csv after.csv --column weight --bootstrap 0 --json > infer.json
"$VPY" - <<'PY'
import json
summary = json.load(open("infer.json"))
text = json.dumps(summary)
assert "3-norm" in text or "p=3" in text, "syngeo infer did not report the 3-norm"
print("syngeo infer: summary.json names the 3-norm")
PY

step "bad input is one line and exit code 2"
set +e
"$SYNGEO" infer missing.csv after.csv 2> err.txt
code=$?
set -e
cat err.txt
[ "$code" = 2 ] || { echo "expected exit code 2 for a missing file, got $code"; exit 1; }
[ "$(wc -l < err.txt)" = 1 ] || { echo "expected one line on stderr"; exit 1; }
if grep -q Traceback err.txt; then echo "traceback for bad input"; exit 1; fi

step "passed"
