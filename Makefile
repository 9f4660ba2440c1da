# Conjure developer entry points: `make demo`, `make test`, each on any supported Blender:
#   make test BLENDER=4.2|4.5|5.0|5.2   (default 5.2 LTS)
# Everything installs itself on first use into .venv-<version>: the pinned Blender-as-a-module
# wheel and the test tools. 4.2-5.0 run on Python 3.11, 5.2 on Python 3.13; tools/find_python.sh
# finds that Python (PATH, pyenv, uv, asdf) or builds it once into ~/.cache/conjure.

BLENDER ?= 5.2

ifeq ($(BLENDER),4.2)
  BPY_PIN := bpy==4.2.23
  PY_VERSION := 3.11
  NUMPY_PIN := numpy==1.26.4
else ifeq ($(BLENDER),4.5)
  BPY_PIN := bpy==4.5.15
  PY_VERSION := 3.11
  NUMPY_PIN := numpy==1.26.4
else ifeq ($(BLENDER),5.0)
  BPY_PIN := bpy==5.0.1
  PY_VERSION := 3.11
  NUMPY_PIN := numpy==1.26.4
else ifeq ($(BLENDER),5.2)
  BPY_PIN := bpy==5.2.3
  PY_VERSION := 3.13
  NUMPY_PIN := numpy==2.5.5
else
  $(error BLENDER must be one of 4.2 4.5 5.0 5.2)
endif

TEST_PINS := $(NUMPY_PIN) pytest==9.2.0 hypothesis==6.170.17 ruff==0.17.6 \
  mypy==2.4.1 types-requests==2.33.0.20261030
VENV := .venv-$(BLENDER)
PY := $(VENV)/bin/python
STAMP := $(VENV)/.conjure-$(BLENDER)
PYTEST_ARGS ?=
# Recursive (=): the search (or one-time build) runs only when a venv must be created.
BASE_PYTHON = $(shell tools/find_python.sh $(PY_VERSION))

.PHONY: test build release validate lint typecheck demo bench clean

$(STAMP): Makefile
	test -x $(PY) || "$(BASE_PYTHON)" -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(BPY_PIN) $(TEST_PINS)
	touch $@

lint: $(STAMP)
	$(PY) -m ruff check .

# mypy over the pure layers (providers/, jobs/, the parsers); settings in pyproject.toml.
typecheck: $(STAMP)
	$(PY) tools/typecheck.py

validate: $(STAMP)
	$(PY) tools/ext.py validate

build: validate
	$(PY) tools/ext.py build --output-dir dist

# A static extension repository for Blender's own client: the zip and the index.json that
# Blender's server-generate writes (validates first).
release: $(STAMP)
	$(PY) tools/ext.py release --output-dir dist/repo

test: lint typecheck build
	$(PY) -m pytest $(PYTEST_ARGS)

demo: build
	$(PY) tools/demo.py

bench: $(STAMP)
	$(PY) tools/bench_vox.py $(if $(AGAINST),--against $(AGAINST))
	$(PY) tools/bench_engine.py
	$(PY) tools/bench_batch.py
	$(PY) tools/bench_voxfuzz.py

clean:
	rm -rf dist .venv-* .pytest_cache .ruff_cache
