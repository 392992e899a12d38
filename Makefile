# personastream — `make demo` runs the pipeline end to end; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PS := $(BIN)/personastream

.PHONY: demo test test-unit lint bench train evaluate schema kafka-jars clean

$(VENV): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(VENV)

kafka-jars: $(VENV)
	$(PS) kafka fetch

demo: $(VENV) kafka-jars
	$(BIN)/python -m stream.tools.demo

test: $(VENV) kafka-jars
	$(BIN)/python -m pytest -q -rs

test-unit: $(VENV)
	$(BIN)/python -m pytest -q -rs tests/unit

lint: $(VENV)
	$(BIN)/ruff check .

bench: $(VENV) kafka-jars
	$(PS) bench

train: $(VENV)
	$(PS) train

evaluate: $(VENV)
	$(PS) evaluate --out reports/evaluation

schema: $(VENV)
	$(PS) schema --out schemas/json

clean:
	rm -rf $(VENV) .personastream
