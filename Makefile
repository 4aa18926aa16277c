# `make demo` and `make test` each set up everything they need on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.sm_magic-installed
# Every package of the test environment at an exact version (`make lock` refreshes it).
LOCK   := requirements/dev.lock

.PHONY: setup lock browser demo test typecheck test-suite test-fast test-latest screenshot bench clean

setup: $(STAMP)

# From the lock alone: what the package index holds today changes nothing here. torch's pin is the
# CPU build this machine has on disk; any other request pulls a CUDA build.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$$(grep '^pip==' $(LOCK))"
	$(PY) -m pip install -q -r $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Resolves pyproject.toml's dev extra and requirements/dev.in against the index as it is today.
LOCK_VENV := build/lock-venv
lock:
	test -x $(LOCK_VENV)/bin/python || $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q pip==26.3 pip-tools==7.7.0
	$(LOCK_VENV)/bin/pip-compile -q --upgrade --extra dev --strip-extras --allow-unsafe --no-emit-index-url \
	  --no-emit-find-links -o $(LOCK) pyproject.toml requirements/dev.in
	# the local label of the on-disk build: `torch==2.13.0` takes it here and a build of that release elsewhere
	sed -i 's/^torch==\(.*\)+cpu$$/torch==\1/' $(LOCK)

demo: setup
	$(PY) scripts/run_demo.py

# The browser tests (tests/e2e) use Debian's chromium; Playwright's own download is never used.
CHROMIUM := /usr/bin/chromium
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

browser:
	@test -x $(CHROMIUM) || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }
	@test -x $(CHROMIUM) || { echo "$(CHROMIUM) is missing: apt-get install -y chromium"; exit 1; }

# Workers for the whole suite: its tests mostly wait on jobs, kernels and browsers, so more workers than
# CPUs finish sooner; the browser tests keep to one worker and the container tests to another.
TEST_WORKERS ?= 4

# apt and pip at once, then mypy beside the tests (neither waits on the other).
test:
	$(MAKE) -j2 setup browser
	$(VENV)/bin/ruff check sm_magic tests bench scripts
	$(MAKE) -j2 typecheck test-suite

typecheck: setup
	$(PY) -m mypy

test-suite: setup browser
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --durations=25

# The edit loop: everything but the tests marked `jobs` or `browser` (on the tests; tests/helpers/lanes.py
# fails an unmarked test that starts a job, kernel, moto or browser), in under a minute.
FAST_LANE := -q -n 2 -m "not jobs and not browser"
test-fast: setup
	$(VENV)/bin/ruff check sm_magic tests bench scripts
	$(PY) -m mypy
	$(PY) -m pytest $(FAST_LANE)

# The fast lane in a new venv with the newest release of every dependency, not the lock: what a user
# installing sm_magic today gets. torch alone stays pinned (a newer one is a multi-GB CUDA build).
LATEST := build/venv-latest
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip
	$(LATEST)/bin/python -m pip install -q torch==2.13.0
	$(LATEST)/bin/python -m pip install -q -e '.[dev]'
	$(LATEST)/bin/python scripts/lock_diff.py
	$(LATEST)/bin/python -m pytest -p no:cacheprovider $(FAST_LANE)

# Not part of `test`: refreshes docs/images/ from a real JupyterLab and Notebook 7 (progress.png from
# the demo script, the rest from the browser tests that check what the pictures show).
screenshot: setup browser
	$(PY) scripts/screenshot.py
	SM_MAGIC_SCREENSHOTS=docs/images $(PY) -m pytest -q -p no:cacheprovider tests/e2e

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
