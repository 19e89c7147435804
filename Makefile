# Every target creates .venv if it is missing. The CPU build of torch is installed first, so that
# the project's `torch` requirement is already satisfied and pip pulls no CUDA build: on Linux
# that is the `+cpu` wheel from PyTorch's CPU index (PyPI serves a CUDA build there); macOS and
# Windows wheels on PyPI are CPU builds already. Set TORCH_INDEX= (empty) where the wheel comes
# from a local mirror or wheel folder instead.
PY          ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
STAMP       := $(VENV)/.syngeo-installed
TORCH       ?= 2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
ifeq ($(shell uname -s),Linux)
TORCH_REQ   := torch==$(TORCH)+cpu
else
TORCH_REQ   := torch==$(TORCH)
endif

.PHONY: demo test check-wheel bench lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_REQ)" $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e ".[dev,cluster]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/syngeo demo --out syngeo-demo --force

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

# Build the wheel, install it without extras in a clean venv, run the CLI from there.
check-wheel:
	PY=$(PY) TORCH_REQ="$(TORCH_REQ)" TORCH_INDEX="$(TORCH_INDEX)" bash scripts/check_wheel.sh

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) syngeo-demo .pytest_cache
