# wasmhost — the commands a developer runs. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8080

.PHONY: help install guests run test test-fast bench bench-quick wrk rust-toolchain lint clean

help:
	@echo "make run        install, build the example guests, serve them on http://127.0.0.1:$(PORT)"
	@echo "make test       install, build guests, run the whole test suite"
	@echo "make test-fast  the same without tests marked slow"
	@echo "make bench      measure everything (< 10 min): bench/results/latest.md and charts"
	@echo "make bench-quick  the same, shorter (about a minute)"
	@echo "make lint       ruff and mypy"

install: $(VENV)/.installed

NPM_PROJECTS := guests/assemblyscript guests/js

$(VENV)/.installed: pyproject.toml setup.py $(foreach p,$(NPM_PROJECTS),$(p)/package-lock.json)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@for p in $(NPM_PROJECTS); do \
		echo "npm ci --prefix $$p"; \
		npm ci --prefix $$p --no-audit --no-fund --loglevel=error || exit 1; \
	done
	$(MAKE) --no-print-directory rust-toolchain
	touch $@

# Rust guests need Debian's rustc with the wasm32 standard library (rustup cannot
# add targets offline). Installed when missing and we may (root or CI); otherwise
# `make guests` skips Rust and says why.
RUST_PACKAGES := rustc libstd-rust-dev-wasm32 lld-14
rust-toolchain:
	@if [ -d /usr/lib/rustlib/wasm32-wasi ] || [ -d /usr/lib/rustlib/wasm32-wasip1 ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "apt-get install $(RUST_PACKAGES)"; \
		(apt-get install -y --no-install-recommends $(RUST_PACKAGES) >/dev/null 2>&1 || \
		 (apt-get update >/dev/null && apt-get install -y --no-install-recommends $(RUST_PACKAGES) >/dev/null)) || \
		echo "could not install the Rust toolchain; Rust guests will be skipped"; \
	else echo "Rust guests need: sudo apt-get install $(RUST_PACKAGES)"; fi

guests: install
	$(PY) guests/build.py

run: guests
	$(VENV)/bin/wasmhost serve --port $(PORT) --deploy-dir guests/dist

test: guests
	$(PY) -m pytest

test-fast: guests
	$(PY) -m pytest -m "not slow"

# The benchmark: under ten minutes, report in bench/results/ (see bench/README.md).
# ONLY=cold_invoke,http runs some scenarios (into bench/results/partial/).
bench: guests wrk
	$(PY) bench/run.py $(if $(ONLY),--only $(ONLY))

# About a minute; results in bench/results/partial/.
bench-quick: guests wrk
	$(PY) bench/run.py --quick $(if $(ONLY),--only $(ONLY))

# The HTTP load generator (Debian's wrk), installed when missing.
wrk:
	@command -v wrk >/dev/null || (apt-get install -y wrk || (apt-get update && apt-get install -y wrk)) >/dev/null

lint: install
	$(VENV)/bin/ruff check wasmhost tests bench guests/build.py
	$(VENV)/bin/ruff format --check wasmhost tests bench guests/build.py
	$(VENV)/bin/mypy wasmhost

clean:
	rm -rf $(VENV) guests/dist .wasmhost .pytest_cache
