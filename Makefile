# The two commands of the README: `make demo` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-all bench kafka-fetch clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python -m assay.demo

# PostgreSQL for the sink's tests: Debian's package when missing (apt-get, as root); the tests
# start their own throwaway cluster on 127.0.0.1 and stop it (scripts/postgres.sh).
.PHONY: postgres-install
postgres-install:
	bash scripts/postgres.sh install

# Services the suite needs (Kafka jars from Maven Central) are fetched here; the tests start and stop them.
kafka-fetch:
	bash scripts/kafka.sh fetch

# The UI's graph libraries from npm (pinned, with their licences) and Debian's chromium for its browser tests.
.PHONY: ui-vendor browser
ui-vendor:
	bash scripts/ui-vendor.sh

browser:
	bash scripts/browser.sh install

test: install kafka-fetch postgres-install ui-vendor browser
	$(BIN)/python -m pytest -q

# Soak and scale runs too (long).
test-all: install kafka-fetch postgres-install ui-vendor browser
	ASSAY_SOAK=1 $(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .cache demo
