# Every target creates .venv if it is missing. The CPU build of torch is installed first,
# so that the project's `torch` requirement is already satisfied and no CUDA build is pulled.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.syngeo-installed

.PHONY: demo test check-wheel bench lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev,cluster]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/syngeo demo --out syngeo-demo --force

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

# Build the wheel, install it without extras in a clean venv, run the CLI from there.
check-wheel:
	PY=$(PY) bash scripts/check_wheel.sh

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) syngeo-demo .pytest_cache
