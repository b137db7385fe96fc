# The two commands README promises: `make demo` and `make test`. `make test-slurm` runs a tiny grid on
# a real one-node SLURM cluster it starts (installing Debian's slurm-wlm and munge if missing).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export TF_CPP_MIN_LOG_LEVEL := 3
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test test-slurm lint bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

$(VENV)/.installed: setup.py $(BIN)/activate
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.installed-test: setup.py $(BIN)/activate
	$(BIN)/pip install -e '.[test]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/python -m ct5x.demo --workdir demo_output

RUFF := $(BIN)/ruff check --line-length 100 --extend-select E501 --config "lint.isort.known-first-party=['ct5x','ct5x_tasks']" --config "lint.isort.known-third-party=['gin']"

# One pytest worker per core (2 here); each test file runs whole in one worker, so a file's module
# fixtures (a trained run, the shortened demo) are built once.
TEST_WORKERS ?= 2

test: $(VENV)/.installed-test
	$(RUFF) ct5x tasks tests benchmarks
	$(BIN)/python -m pytest -q -p no:cacheprovider --import-mode=importlib -n $(TEST_WORKERS) --dist loadfile tests

test-slurm: $(VENV)/.installed-test
	CT5X_SLURM_TEST=1 $(BIN)/python -m pytest -q -rs -p no:cacheprovider --import-mode=importlib tests/ct5x/sweep/test_slurm_cluster.py

lint: $(VENV)/.installed-test
	$(RUFF) ct5x tasks tests benchmarks

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/bench.py

clean:
	rm -rf $(VENV) demo_output
