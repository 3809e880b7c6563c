# Quick start: `make demo` (default sweep + report on the embedded digits) and `make test`.
# Both create .venv and install the project into it on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pags-installed

.PHONY: install demo study test test-all lint

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch/torchvision pinned as a pair: PyPI's torchvision does not import beside other torches
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/pags sweep --preset digits-quick
	$(BIN)/pags analyze results/digits-quick

# The study behind RESULTS.md: two sweeps (6 seeds each), then the verdicts (37 min on 2 idle
# cores, cold cache: BENCHMARKS.md).
study: $(STAMP)
	$(BIN)/pags sweep --preset study-digits
	$(BIN)/pags sweep --preset study-curved
	$(BIN)/python -m analysis.study_report results/study-digits results/study-curved

# The default suite leaves out the tests marked slow (fault injection, clusters, killed
# drivers: minutes each); test-all runs everything and is what CI runs (.ci/run).
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

# ruff, and the layering contracts of pyproject.toml [tool.importlinter] (README, map of the code)
lint: $(STAMP)
	$(BIN)/ruff check sweep trainables analysis tests benchmarks
	$(BIN)/lint-imports
