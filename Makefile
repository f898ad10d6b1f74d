# Everything sets itself up on a fresh machine: a .venv, the pinned requirements and a Chromium.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 7860
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE := 1
export LITELLM_LOCAL_MODEL_COST_MAP := True

.PHONY: setup dev browser run test lint fuzz bench notebook export clean phoenix

setup: $(VENV)/.installed browser

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

# What only tests, lint and benchmarks need.
dev: $(VENV)/.dev
$(VENV)/.dev: $(VENV)/.installed requirements-dev.txt requirements-ray.txt
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Playwright's own Chromium where it can be downloaded, else the system's (Debian: apt-get install chromium).
browser: $(VENV)/.installed
	@if $(PY) -c "import sys; from agent.engine.browser import find_chromium; sys.exit(0 if find_chromium() else 1)"; then \
		echo "browser: $$($(PY) -c 'from agent.engine.browser import find_chromium; print(find_chromium())')"; \
	else \
		timeout 300 $(PY) -m playwright install chromium >/dev/null 2>&1 \
		|| { echo "playwright could not download Chromium; installing the system package"; \
		     SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		     $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }; \
		$(PY) -c "import sys; from agent.engine.browser import find_chromium; p = find_chromium(); print('browser:', p); sys.exit(0 if p else 1)"; \
	fi

run: setup
	$(PY) app.py --host $(HOST) --port $(PORT)

test: setup dev lint
	$(PY) -m pytest -q

# ruff, mypy and import-linter (floors point down, no cycle), configured in pyproject.toml; part of `make test`.
lint: dev
	$(PY) -m ruff check agent app.py tests bench
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

# schemathesis against a running app (fake model), every operation, bounded to ~15 minutes; not part of `make test`.
fuzz: setup dev
	$(PY) tests/fuzz.py --max-examples 60 --max-time 900

bench: setup dev
	$(PY) bench/bench_observe.py
	$(PY) bench/bench_engine.py
	$(PY) bench/bench_interact.py
	$(PY) bench/bench_store.py
	$(PY) bench/bench_history.py
	$(PY) bench/bench_traces.py
	$(PY) bench/bench_otel.py
	$(PY) bench/bench_workflows.py
	$(PY) bench/bench_fork.py
	$(PY) bench/bench_startup.py
	$(PY) bench/bench_runpath.py
	$(PY) bench/bench_experiments.py
	$(PY) bench/bench_secrets.py

# The OpenTelemetry export against a real Arize Phoenix on 127.0.0.1 (in its own .venv-phoenix; telemetry off,
# nothing leaves the machine), read back through Phoenix's client; not part of `make test`.
# `make phoenix SCREENSHOT=docs/phoenix.png` also saves a picture of a trace.
PHOENIX_VENV := .venv-phoenix
phoenix: setup $(PHOENIX_VENV)/.installed
	$(PHOENIX_VENV)/bin/python tests/phoenix_check.py $(if $(SCREENSHOT),--screenshot $(SCREENSHOT))

$(PHOENIX_VENV)/.installed: requirements-phoenix.txt
	test -x $(PHOENIX_VENV)/bin/python || $(PYTHON) -m venv $(PHOENIX_VENV)
	$(PHOENIX_VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements-phoenix.txt
	touch $@

# Jupyter's server is installed only here: it drags in a slow-to-import jsonschema extra the app does not need.
notebook: setup
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-notebook.txt
	$(PY) -m notebook --notebook-dir=notebooks

export: setup
	$(PY) -m agent.log export --data-dir $${WORKBENCH_DATA_DIR:-data} --out exports

clean:
	rm -rf $(VENV) $(PHOENIX_VENV) .pytest_cache
