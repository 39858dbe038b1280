# The two documented entry points are `make demo` and `make test`; both set up .venv themselves.
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed

.PHONY: setup demo test test-all lint clean

setup: $(STAMP)

# Reinstall only when the pins or the package metadata change. torch comes from the local CPU wheel via the
# pin torch==2.13.0. Then the project itself, editable (its dependencies are requirements.txt's pins, read by
# pyproject.toml and installed just before), so `import dendritic`, `python -m export|features|sweep` and the
# dendritic-* commands work from any directory with this interpreter. Two steps because pip builds an
# editable project before installing anything else: --no-build-isolation then uses the pinned setuptools
# from requirements-dev.txt instead of fetching one.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(VPY) -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps -e .
	$(VPY) -m pip check
	touch $(STAMP)

# Train, fold and export on the small dataset bundled in demo/ (no ../shared needed).
demo: setup
	$(VPY) train.py --data-directory demo/data --out-directory out/demo --holdout-directory demo/data/holdout

# Default suite (<~15 min on 2 cores); CI adds the slow end-to-end and container tests via TEST_ARGS.
test: setup
	$(VPY) -m pytest $(TEST_ARGS)

lint: setup
	$(VPY) -m ruff check .

clean:
	rm -rf out .pytest_cache
