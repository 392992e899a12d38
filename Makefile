# personastream — `make demo` runs the pipeline end to end; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PS := $(BIN)/personastream

.PHONY: demo demo-site test test-unit lint bench soak train evaluate schema kafka-jars chromium clean

$(VENV): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(VENV)

kafka-jars: $(VENV)
	$(PS) kafka fetch

# Debian's Chromium and chromedriver for the browser test (tests/broker/test_browser.py); Selenium is
# given their paths, so it never downloads a browser or a driver
chromium:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update && apt-get install -y chromium chromium-driver)

demo: $(VENV) kafka-jars
	$(BIN)/python -m stream.tools.demo

# the action bandit's closed loop on a fresh broker with two workers and the shipped example truth; prints the lift
.PHONY: demo-bandit
demo-bandit: $(VENV) kafka-jars
	$(BIN)/python -m stream.tools.simulate

demo-site: $(VENV) chromium
	$(PS) demo-site

test: $(VENV) kafka-jars chromium
	$(BIN)/python -m pytest -q -rs

test-unit: $(VENV)
	$(BIN)/python -m pytest -q -rs tests/unit

lint: $(VENV)
	$(BIN)/ruff check .

bench: $(VENV) kafka-jars
	$(PS) bench
	$(PS) bench-web

soak: $(VENV) kafka-jars
	$(PS) soak

train: $(VENV)
	$(PS) train

evaluate: $(VENV)
	$(PS) evaluate --out reports/evaluation

schema: $(VENV)
	$(PS) schema --out schemas/json

clean:
	rm -rf $(VENV) .personastream
