# make quickstart | test | lint | bench
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup quickstart test lint bench

setup: $(VENV)/.installed

# requirements.lock pins every package (pip freeze); torch 2.13.0 is the CPU build on this disk.
$(VENV)/.installed: pyproject.toml requirements.lock
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -c requirements.lock -e ".[dev]"
	# Reference implementation for metric parity tests: its metric modules need no TensorFlow.
	$(PY) -m pip install -q --no-deps -c requirements.lock disentanglement-lib gin-config absl-py
	touch $@

quickstart: setup
	$(VENV)/bin/study run configs/quickstart.yaml
	$(VENV)/bin/study report --study quickstart --out report/

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check study trainables analysis tests benchmarks

bench: setup
	$(PY) benchmarks/train_throughput.py
