# The README's two commands: `make demo` (the loop on a local broker) and
# `make test` (the suite against a real broker). Both set everything up.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench clean broker-jars

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Resolve the broker's jars through Maven (cached under .driftline/).
broker-jars: $(STAMP)
	$(VENV)/bin/driftline broker jars

demo: broker-jars
	$(VENV)/bin/driftline demo

test: broker-jars
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: broker-jars
	$(PY) bench/produce_consume.py --quick
	$(PY) bench/monitor.py --quick
	$(PY) bench/trainer.py --quick
	$(PY) bench/serve.py --quick
	$(PY) bench/loop.py --quick

clean:
	-$(VENV)/bin/driftline broker down
	rm -rf $(VENV) .driftline
