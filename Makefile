# Conjure developer entry points.  `make test` (Blender 5.0.1) or `make test BLENDER=4.2`.
# Everything installs itself into a local venv on first use; only Python 3.11 is needed.

BLENDER ?= 5.0
PYTHON ?= $(shell command -v python3.11 || command -v python3)

ifeq ($(BLENDER),4.2)
  BPY_PIN := bpy==4.2.23
  VENV := .venv-4.2
else ifeq ($(BLENDER),5.0)
  BPY_PIN := bpy==5.0.1
  VENV := .venv
else
  $(error BLENDER must be 5.0 or 4.2)
endif

TEST_PINS := numpy==1.26.4 pytest==9.2.0 hypothesis==6.170.17 ruff==0.17.6
PY := $(VENV)/bin/python
STAMP := $(VENV)/.conjure-$(BLENDER)
PYTEST_ARGS ?=

.PHONY: test build validate lint demo bench clean

$(STAMP): Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(BPY_PIN) $(TEST_PINS)
	touch $@

lint: $(STAMP)
	$(PY) -m ruff check .

validate: $(STAMP)
	$(PY) tools/ext.py validate

build: validate
	$(PY) tools/ext.py build --output-dir dist

test: lint build
	$(PY) -m pytest $(PYTEST_ARGS)

demo: build
	$(PY) tools/demo.py

bench: $(STAMP)
	$(PY) tools/bench_vox.py
	$(PY) tools/bench_pump.py

clean:
	rm -rf dist .venv .venv-4.2 .pytest_cache .ruff_cache
