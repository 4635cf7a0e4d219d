# rt_physio — the README's two commands are `make run` and `make test`; both set everything up first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# torch is pinned once, in pyproject.toml; it is installed first so pip takes the local CPU build
# instead of resolving a multi-GB CUDA build for it.
TORCH  := $(shell grep -m1 -o '"torch==[^"]*"' pyproject.toml | tr -d '"')
RUN_ARGS ?=
# make run serves the live dashboard page too (its address is in the first line printed); DASHBOARD= turns it off
DASHBOARD ?= --dashboard 127.0.0.1:8050

.PHONY: install run test lint typecheck pytest system-deps bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "pip==25.3"
	$(BIN)/python -m pip install --quiet "$(TORCH)" "setuptools<81"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: install
	$(BIN)/rt-physio run $(DASHBOARD) $(RUN_ARGS)

# Tests need a real MQTT broker binary (each test starts its own on a free loopback port), and a real headless
# browser for the dashboard tests (Debian's chromium, driven by selenium through chromium-driver).
system-deps:
	@command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || { \
		echo "installing Debian's mosquitto (MQTT broker used by the tests)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; }
	@{ test -x /usr/bin/chromium && test -x /usr/bin/chromedriver; } || { \
		echo "installing Debian's chromium and chromium-driver (headless browser for the dashboard tests)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

lint: install
	$(BIN)/ruff check rt_physio tests benchmarks examples

typecheck: install
	$(BIN)/mypy

pytest: install system-deps
	$(BIN)/pytest

test: install system-deps lint typecheck pytest

# Every benchmark measures its baseline in the same run; results land in benchmarks/results/ and the README's
# latency table is regenerated.
bench: install
	$(BIN)/python benchmarks/bench_dsp.py
	$(BIN)/python benchmarks/bench_inference.py --device cpu
	$(BIN)/python benchmarks/bench_latency.py
	$(BIN)/python benchmarks/bench_cold_path.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
