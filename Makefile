# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[airflow,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/scrubber demo

test: $(STAMP)
	$(BIN)/ruff check scrubber dags tests bench
	$(BIN)/pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check scrubber dags tests bench

bench: $(STAMP)
	$(BIN)/python bench/bench_reference_load.py
	$(BIN)/python bench/bench_scrub.py --lines 1000000

clean:
	rm -rf $(VENV) .scrubber .scrubber-demo
