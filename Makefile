# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
export MARKET_DATA_DIR ?= ./var

.PHONY: run demo serve test lint fmt tour messages bench bench-metering bench-billing bench-upload bench-quality bench-documents bench-fairness bench-http install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The last step caches a cut of the CJK font for PDF documents (billing/document_render.py), once per machine.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	$(BIN)/python -c 'from billing.document_render import font_cut; font_cut()'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -c 'from billing.document_render import font_cut; font_cut()'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## Build the demo marketplace (safe to run twice) and serve it on http://$(HOST):$(PORT)
run: install
	$(BIN)/market demo --keys-out $(MARKET_DATA_DIR)/demo-keys.json --logins-out $(MARKET_DATA_DIR)/demo-logins.json
	@echo "Web console: http://$(HOST):$(PORT)/login  (sign-ins in $(MARKET_DATA_DIR)/demo-logins.json)"
	$(BIN)/market serve --host $(HOST) --port $(PORT)

## Run the test suite. MARKET_DATABASE_URL=postgresql+psycopg://... runs it on PostgreSQL.
## pytest's exit 5 (no test collected) is a failure here: a green run must have run tests.
test: install-dev
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy market products metering billing sandbox

fmt: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Run the README's tour against a fresh demo server in a temporary directory; fails on the first failing step.
tour: install
	scripts/tour.sh $(BIN)

## Extract every msgid (babel.cfg) and update the zh_CN and en catalogues in market/locale/.
messages: install-dev
	$(BIN)/python -m market.catalogues update

## Benchmarks (see docs/benchmarks.md); each prints ratios or times measured side by side in one run.
bench: install-dev
	$(BIN)/python -m bench.sandbox_overhead --scale 1

bench-metering: install-dev
	$(BIN)/python -m bench.metering_overhead

bench-billing: install-dev
	$(BIN)/python -m bench.billing_run
	$(BIN)/python -m bench.billing_finalize

bench-upload: install-dev
	$(BIN)/python -m bench.upload_memory

bench-quality: install-dev
	$(BIN)/python -m bench.quality_distinct

bench-documents: install-dev
	$(BIN)/python -m bench.document_pdf

bench-fairness: install-dev
	$(BIN)/python -m bench.sandbox_fairness

bench-http: install-dev
	$(BIN)/python -m bench.http_throughput

clean:
	rm -rf $(VENV) var
