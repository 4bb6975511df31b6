# Every target that needs Python depends on install, so each works as the
# first command on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# checkov (tests/test_terraform.py runs it over infra/terraform) has its own
# venv: its many dependencies would fight the pinned ones of requirements.txt.
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
CHECKOV_VERSION := 3.3.30

.PHONY: install chromium up down test bench bench-lifecycle bench-scheduler bench-bot bench-cas bench-auth bench-instances bench-load bench-query bench-ui bench-notify bench-pickup clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt client/requirements.txt functions/requirements.txt \
		local/requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt -e .
	$(MAKE) --no-print-directory chromium
	touch $(STAMP)

# The browser tests/test_ui*.py drive (playwright over the system's chromium):
# installed with apt when missing and we may; otherwise say what to install.
chromium:
	command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& { apt-get install -y --no-install-recommends chromium \
		     || { apt-get update -qq && apt-get install -y --no-install-recommends chromium; }; }; } \
		|| echo "warning: no chromium: install Debian's 'chromium' package (or set SWARMING_CHROMIUM)" >&2

$(CHECKOV): Makefile
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $(CHECKOV)

up: install
	$(BIN)/swarming local up --bots 1

down: install
	$(BIN)/swarming local down

test: install $(CHECKOV)
	$(BIN)/pytest

bench: bench-lifecycle bench-scheduler bench-bot bench-cas bench-auth bench-instances bench-query bench-pickup

bench-lifecycle: install
	$(BIN)/python -m bench.lifecycle

bench-notify: install
	$(BIN)/python -m bench.notify

bench-scheduler: install
	$(BIN)/python -m bench.scheduler

bench-bot: install
	$(BIN)/python -m bench.bot

bench-cas: install
	$(BIN)/python -m bench.cas

bench-auth: install
	$(BIN)/python -m bench.auth

# The web UI's pages: Firestore reads, time to first byte, the live log's latency.
bench-ui: install
	$(BIN)/python -m bench.ui --bots 1000 --tasks 10000

bench-instances: install
	$(BIN)/python -m bench.instances

# About 20 minutes: the reference fleet idles 4 minutes to reach its 60 s back-off.
bench-pickup: install
	$(BIN)/python -m bench.pickup

bench-query: install
	$(BIN)/python -m bench.query

# Not in `bench`: at its defaults (500 bots, 10,000 tasks) it takes most of an hour on 2 cores (docs/benchmarks.md).
bench-load: install
	$(BIN)/python -m bench.load

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .local
