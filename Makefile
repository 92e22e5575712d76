# Two commands for a newcomer: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Re-install when pyproject.toml changes.
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

export HF_HUB_OFFLINE := 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install demo readme-table test lint pytest services bench bench-gpu clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[all]"
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

## Train two tiny planted-shortcut models (CNN + ViT), audit them, write reports to demo-out/.
demo: install
	$(BIN)/occulta demo --out demo-out

## Rewrite README.md's results table from a fresh CPU demo (seed 0) on this machine.
readme-table: install
	$(BIN)/occulta demo --out demo-out --device cpu --seed 0
	$(BIN)/python -m occulta.demo_table demo-out README.md

## Lint, type-check, check the layering, then run every test (starts PostgreSQL/Redis if needed).
test: install services lint pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

pytest: install services
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest

services:
	@bash scripts/ensure-services.sh

bench: install
	$(BIN)/python -m bench.engine
	$(BIN)/python -m bench.lime_sis --quick

## Engine, LIME, occlusion, token dropping, BackSelect and the battery (estimate vs measured) in one
## run: full sizes on a GPU (bench/results/gpu.json), small ones on a CPU (gpu_cpu.json).
bench-gpu: install
	$(BIN)/python -m bench.gpu --device auto

clean:
	rm -rf demo-out .pytest_cache .mypy_cache .ruff_cache
