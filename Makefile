# The README's two commands: `make demo` (the loop on a local broker) and
# `make test` (the suite against a real broker). Both set everything up.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Every transitive dependency at the exact version CI tested; `make lock` regenerates it.
LOCK := requirements/lock.txt
UV_VERSION := 0.13.9

.PHONY: setup demo test lint bench clean broker-jars lock peers peers-lock

$(STAMP): pyproject.toml setup.py schemas/_bodies.c $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c $(LOCK) pip setuptools wheel
	$(PY) -m pip install --quiet --no-build-isolation -c $(LOCK) -e '.[dev]'
	touch $(STAMP)

# Re-resolve the ranges in pyproject.toml (and requirements/build.in) into the lock, for every platform.
lock:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet 'uv==$(UV_VERSION)'
	$(VENV)/bin/uv pip compile pyproject.toml requirements/build.in --extra dev --universal \
		--python-version 3.11 --custom-compile-command "make lock" -o $(LOCK)

setup: $(STAMP)

# Peers the benches compare with (Evidently, NannyML): a venv of their own, from their own lock,
# so their pins never touch driftline's. Only bench/ uses it, and only when it exists.
PEERS_VENV := .venv-peers
PEERS_LOCK := requirements/peers.txt
$(PEERS_VENV)/.installed: $(PEERS_LOCK)
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --quiet -r $(PEERS_LOCK)
	touch $@

peers: $(PEERS_VENV)/.installed

peers-lock: $(STAMP)
	$(PY) -m pip install --quiet 'uv==$(UV_VERSION)'
	$(VENV)/bin/uv pip compile requirements/peers.in --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
		--custom-compile-command "make peers-lock" -o $(PEERS_LOCK)

# Resolve the broker's jars through Maven (cached under .driftline/).
broker-jars: $(STAMP)
	$(VENV)/bin/driftline broker jars

demo: broker-jars
	$(VENV)/bin/driftline demo

# Lint, the import contracts (pyproject's [tool.importlinter]), types, then the suite.
test: broker-jars
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
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
	rm -rf $(VENV) $(PEERS_VENV) .driftline
