# `make demo` and `make test` each set up everything they need on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.sm_magic-installed

.PHONY: setup browser demo test test-fast screenshot bench clean

setup: $(STAMP)

# torch first and pinned: this machine has the CPU build on disk; any other request pulls a CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(PY) scripts/run_demo.py

# The browser tests (tests/e2e) use Debian's chromium; Playwright's own download is never used.
CHROMIUM := /usr/bin/chromium
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

browser:
	@test -x $(CHROMIUM) || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }
	@test -x $(CHROMIUM) || { echo "$(CHROMIUM) is missing: apt-get install -y chromium"; exit 1; }

test: setup browser
	$(VENV)/bin/ruff check sm_magic tests bench scripts
	$(PY) -m mypy
	$(PY) -m pytest -q

# The edit loop: everything but the tests marked `jobs` or `browser` (tests/conftest.py), in under a minute.
test-fast: setup
	$(VENV)/bin/ruff check sm_magic tests bench scripts
	$(PY) -m mypy
	$(PY) -m pytest -q -m "not jobs and not browser"

# Not part of `test`: refreshes docs/images/progress.png from a real JupyterLab.
screenshot: setup browser
	$(PY) scripts/screenshot.py

# docs/config.md, written from TrainConfig's fields (tests/test_docs.py fails while it is out of date).
.PHONY: docs
docs: setup
	$(PY) scripts/config_reference.py

# Figures for docs/benchmarks.md; run by hand on a quiet machine.
bench: setup
	$(PY) bench/overhead.py
	$(PY) bench/widget_rate.py
	$(PY) bench/widget_long_job.py
	$(PY) bench/widget_browser.py
	$(PY) bench/api_calls.py --scale 10 --jobs 20
	$(PY) bench/resume.py

clean:
	rm -rf build sm_jobs
