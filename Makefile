# Two commands on a fresh machine:
#   make demo   - the whole pipe on embedded defaults (local broker, local Sheets server, the DAG);
#                 make demo BROKER=kafka runs it on Apache Kafka (Java needed) instead of Tansu,
#                 make demo FORMAT=avro shows another value format (avro, json_schema: Java needed)
#   make test   - lint + the test suite (what CI runs through .ci/run)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BROKER ?= tansu
FORMAT ?= json

.PHONY: demo test lint bench experiment clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(PY) -m airflow_provider_sheets.devkit.demo --broker $(BROKER) --value-format $(FORMAT)

test: $(VENV)/.installed
	bash scripts/test.sh

bench: $(VENV)/.installed
	$(PY) benchmarks/bench.py $(ARGS)

experiment: $(VENV)/.installed
	$(PY) benchmarks/latency_experiment.py $(ARGS)

lint: $(VENV)/.installed
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
