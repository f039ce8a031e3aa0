# Everything runs from here; `.ci/run` calls `make test`, exactly what a developer runs.
PY ?= python3
VENV := $(abspath .venv)
BIN := $(VENV)/bin
STAMP := $(VENV)/.dev-deps

.PHONY: demo test build lint rust-test py-test bench-quick fmt clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	touch $(STAMP)

# Release build: the figures people see come from the same optimisation level.
build: $(STAMP)
	VIRTUAL_ENV=$(VENV) $(BIN)/maturin develop --release -q

demo: build
	$(BIN)/python -m agenticaiframework.llms demo

rust-test:
	cargo test --no-default-features --quiet
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --no-default-features -- -D warnings
	cargo fmt --check

lint: $(STAMP)
	$(BIN)/ruff check python tests benches examples
	$(BIN)/ruff format --check python tests benches examples
	$(BIN)/mypy

py-test: build
	$(BIN)/python -m pytest tests -q -p no:cacheprovider
	$(BIN)/python -m pytest benches -q -p no:cacheprovider \
		--benchmark-min-rounds=3 --benchmark-max-time=0.005 --benchmark-warmup=off

test: rust-test lint py-test

fmt: $(STAMP)
	cargo fmt
	$(BIN)/ruff format python tests benches examples
	$(BIN)/ruff check --fix python tests benches examples

clean:
	rm -rf target $(VENV) python/agenticaiframework/*.so
