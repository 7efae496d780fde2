# The README's two commands: `make demo` runs the pipeline end to end, `make test` passes the tests.
# Each does its own set-up on a fresh machine: system packages, a virtual environment, the Kafka jars.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= all,test,dev,train

.PHONY: setup demo test lint typecheck unit screenshots broker-start broker-stop clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/ensure-system.sh
	bash scripts/ensure-system.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	$(BIN)/platestream broker fetch
	touch $@

demo: setup
	$(BIN)/platestream demo --log-level WARNING

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest

unit: setup
	$(BIN)/pytest -m "not kafka"

# The console's main pages, as its browser test sees them over the whole pipeline.
screenshots: setup
	PLATESTREAM_SCREENSHOTS=docs/screenshots $(BIN)/pytest tests/test_console_browser.py

broker-start: setup
	$(BIN)/platestream broker start

broker-stop: setup
	$(BIN)/platestream broker stop

clean:
	-$(BIN)/platestream broker stop
	rm -rf $(VENV) .platestream .pytest_cache .mypy_cache .ruff_cache
