# The verbs people type. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED ?= ../shared
# The UTKFace archive: UTKFACE_ARCHIVE if set, else ../shared/data beside the repo, else data/.
UTKFACE_ARCHIVE ?= $(if $(wildcard $(SHARED)/data/UTKFace.tar.gz),$(abspath $(SHARED)/data/UTKFace.tar.gz),data/UTKFace.tar.gz)
AGEFAIR_YUNET_MODEL ?= $(if $(wildcard $(SHARED)/models/face_detection_yunet_2023mar.onnx),$(abspath $(SHARED)/models/face_detection_yunet_2023mar.onnx),)
AGEFAIR_UNSEEN ?= $(if $(wildcard $(SHARED)/data/fairface_dev/labels.csv),$(abspath $(SHARED)/data/fairface_dev/labels.csv),)
AGEFAIR_PHOTOS ?= $(if $(wildcard $(SHARED)/photos),$(abspath $(SHARED)/photos),)
export UTKFACE_ARCHIVE AGEFAIR_YUNET_MODEL AGEFAIR_PHOTOS AGEFAIR_UNSEEN
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: help setup train sweep test test-fast bench app chromium lint format clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

setup: $(STAMP)  ## create .venv with agefair and everything it needs
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch/torchvision pinned to the builds this machine has on disk (others download GBs).
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e ".[dev,app,baselines,sweeps,export]"
	touch $(STAMP)

train: setup  ## train the default experiment on CPU and print its test metrics (ARGS=overrides)
	$(BIN)/python -m agefair.train $(ARGS)

sweep: setup  ## a Hydra multirun, e.g. make sweep ARGS="experiment=compare_approaches"
	$(BIN)/python -m agefair.train -m $(ARGS)

test: setup  ## the whole test suite (real-data tests skip when the archive is absent)
	$(BIN)/python -m pytest -q $(ARGS)

test-fast: setup  ## unit tests only
	$(BIN)/python -m pytest -q -m "not slow and not realdata" $(ARGS)

bench: setup  ## throughput: data pipeline, model step, training loop (outputs/bench/)
	$(BIN)/python -m agefair.bench $(ARGS)

app: setup  ## the web app on http://127.0.0.1:8000 (ARGS="--port 9000 --ckpt PATH")
	$(BIN)/python -m agefair.app.server $(ARGS)

chromium:  ## Debian's Chromium for the browser test (root; the test skips without it)
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium)

lint: setup  ## ruff check and format check
	$(BIN)/ruff check agefair tests experiments
	$(BIN)/ruff format --check agefair tests experiments

format: setup  ## ruff fix and format
	$(BIN)/ruff check --fix agefair tests experiments
	$(BIN)/ruff format agefair tests experiments

clean:  ## remove caches (keeps .venv, data/ and outputs/)
	rm -rf .pytest_cache .ruff_cache
