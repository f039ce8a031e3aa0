# Everything runs from here; `.ci/run` calls `make test`, exactly what a developer runs.
PY ?= python3
VENV := $(abspath .venv)
BIN := $(VENV)/bin
STAMP := $(VENV)/.dev-deps
BUILD_STAMP := $(VENV)/.build-deps
# pip (run by maturin) would otherwise print an "Ignoring ...: markers 'extra == ...'" line
# per optional dependency.
MATURIN := PIP_QUIET=1 VIRTUAL_ENV=$(VENV) $(BIN)/maturin

.PHONY: demo demo-fleet test build develop wheel lint unasync stubtest wheel-check rust-test rust-loom \
	py-test py-versions fmt clean bench-compare bench-fleet-compare bench-quota-compare bench-load \
	bench-hedging bench-retry-budget redis-server

$(BIN)/python:
	$(PY) -m venv $(VENV)

# What building alone needs (the demo): maturin, nothing of the development set.
$(BUILD_STAMP): | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$$(grep '^maturin' requirements-dev.txt)"
	touch $(BUILD_STAMP)

$(STAMP): requirements-dev.txt | $(BUILD_STAMP)
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	touch $(STAMP)

# Release build: the figures people see come from the same optimisation level.
develop: $(BUILD_STAMP)
	$(MATURIN) develop --release -q

build: $(STAMP)
	$(MAKE) --no-print-directory develop

demo: develop
	$(BIN)/python -m agenticaiframework.llms demo

# The wheel a user installs (pip install target/wheels/agenticaiframework-*.whl).
wheel: $(BUILD_STAMP)
	$(MATURIN) build --release -q --out target/wheels
	@ls -1 target/wheels/*.whl

# The fleet demo: 4 worker processes sharing through a local redis-server.
demo-fleet: build redis-server
	$(BIN)/python -m agenticaiframework.llms demo --fleet 4

rust-test:
	cargo test --no-default-features --quiet
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --no-default-features -- -D warnings
	cargo fmt --check

# Model checking (loom) of the lock-free breaker (src/breaker.rs) and the counters'
# snapshots (loom/, which checks src/metrics.rs itself). Its own target dir, so the normal
# build is not invalidated. Bounded to LOOM_MAX_PREEMPTIONS preemptions per execution
# (unbounded, one three-thread model alone runs for many minutes).
LOOM_MAX_PREEMPTIONS ?= 3
LOOM_ENV := CARGO_TARGET_DIR=$(abspath target/loom) RUSTFLAGS="--cfg loom" \
	LOOM_MAX_PREEMPTIONS=$(LOOM_MAX_PREEMPTIONS)
rust-loom:
	$(LOOM_ENV) cargo test --no-default-features --release --lib --quiet loom_tests
	$(LOOM_ENV) cargo test --manifest-path loom/Cargo.toml --release --quiet
	cargo fmt --manifest-path loom/Cargo.toml --check

# The sync drivers are generated from the async ones (scripts/unasync.py says why).
unasync: $(STAMP)
	$(BIN)/python scripts/unasync.py

lint: $(STAMP)
	$(BIN)/python scripts/unasync.py --check
	$(BIN)/ruff check python tests benches examples fuzz scripts
	$(BIN)/ruff format --check python tests benches examples fuzz scripts
	$(BIN)/mypy

# The fleet tier's tests (tests/test_fleet_store.py) start a redis-server of their own on a
# free loopback port (tests/redis_server.py). When none is on PATH, Debian's package is
# installed (as root, with apt-get); the service it may start on 6379 is stopped and
# disabled, since the tests never use it. Elsewhere this prints how to get one, and those
# tests are skipped (pytest -ra says why).
REDIS_SERVER ?= redis-server
redis-server:
	@if command -v $(REDIS_SERVER) >/dev/null 2>&1; then \
		echo "redis-server: $$(command -v $(REDIS_SERVER))"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "redis-server not on PATH: installing Debian's redis-server package"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server \
		&& { systemctl disable --now redis-server >/dev/null 2>&1 \
			|| service redis-server stop >/dev/null 2>&1 || true; }; \
	else \
		echo "redis-server is not on PATH, and installing it needs root and apt-get."; \
		echo "  Debian/Ubuntu: sudo apt-get install redis-server    macOS: brew install redis"; \
		echo "  Until then the Redis tests (tests/test_fleet_store.py) are skipped."; \
	fi

py-test: build redis-server
	$(BIN)/python -m pytest tests -q -p no:cacheprovider
	# Quick mode: each benchmark runs once, so the suites never rot (no timing table; the
	# figures come from benches/compare/ and the standalone scripts).
	$(BIN)/python -m pytest benches -q -p no:cacheprovider --benchmark-disable

# The stubs must match what the extension really exports.
stubtest: build
	$(BIN)/python -m mypy.stubtest agenticaiframework._native

# The wheel a user installs: built fresh, installed into an empty venv, imported.
wheel-check: $(STAMP)
	rm -rf target/wheels target/wheel-venv
	$(MATURIN) build --release -q --out target/wheels
	$(PY) -m venv target/wheel-venv
	target/wheel-venv/bin/pip install -q target/wheels/*.whl
	cd /tmp && $(abspath target/wheel-venv)/bin/python -c "import agenticaiframework._native as n, agenticaiframework.llms as l, importlib.resources as r; assert r.files('agenticaiframework').joinpath('py.typed').is_file() and r.files('agenticaiframework').joinpath('_native.pyi').is_file(); print('wheel ok:', n.__file__)"

# The one abi3 wheel (wheel-check's) on every other CPython >= 3.10 found here (pyenv's
# versions, python3.X on PATH; scripts/interpreters.sh), each in its own venv under target/:
# the smoke subset below (examples, the manager's API, sync and async paths, streams, the
# walk, messages, errors, single-flight, the native metrics, fork). The whole suite runs on
# .venv's interpreter (py-test). An absent interpreter is skipped with a line saying so.
SMOKE_TESTS := tests/test_examples.py tests/test_manager_api.py tests/test_manager.py \
	tests/test_async.py tests/test_async_paths.py tests/test_stream.py tests/test_walk.py \
	tests/test_messages.py tests/test_programming_errors.py tests/test_singleflight.py \
	tests/test_metrics_native.py tests/test_fork_native.py tests/test_deadlines.py \
	tests/test_hedging.py
py-versions: wheel-check
	scripts/interpreters.sh "$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
		$(SMOKE_TESTS)

test: redis-server rust-test rust-loom lint stubtest py-test wheel-check py-versions
	@echo "make test: every step passed (cargo test, loom, clippy, fmt, ruff, mypy --strict," \
		"stubtest, pytest, benches in quick mode, the wheel installed and imported, the" \
		"smoke tests on the other CPython versions found)"

fmt: $(STAMP)
	cargo fmt
	$(BIN)/ruff format python tests benches examples fuzz scripts
	$(BIN)/ruff check --fix python tests benches examples fuzz scripts
	$(BIN)/python scripts/unasync.py

# The peer comparison (issue 6; benches/compare/): builds the peers' venvs under
# .bench-venvs/ (rebuilt when their requirements file changes), then runs interleaved
# rounds, memory and callgrind (~10 minutes) and writes BENCHMARKS.md and
# benches/compare/hot_paths.png. It measures the extension as `make build` left it.
BENCH_PY ?= python3.11
BENCH_VENVS := $(abspath .bench-venvs)
BENCH_ROUNDS ?= 5

$(BENCH_VENVS)/%/.stamp: benches/compare/requirements-%.txt
	rm -rf $(BENCH_VENVS)/$*
	$(BENCH_PY) -m venv $(BENCH_VENVS)/$*
	$(BENCH_VENVS)/$*/bin/python -m pip install -q -r $<
	touch $@

bench-compare: $(BENCH_VENVS)/ours/.stamp $(BENCH_VENVS)/afw3012/.stamp $(BENCH_VENVS)/litellm/.stamp
	$(BENCH_VENVS)/ours/bin/python benches/compare/run.py --rounds $(BENCH_ROUNDS)

# The Redis tier beside LiteLLM's (issue 15; benches/compare/fleet.py): one redis-server for
# the run (free loopback port, no persistence); per round one subprocess per side, order
# alternating: ours in .venv (the working tree, built here), LiteLLM Router's Redis cache
# in .bench-venvs/litellm. Each times its hit against a bare redis-py GET of the same value
# in the same process. Writes the marked section at the end of BENCHMARKS.md (bench-compare
# keeps it) and benches/compare/fleet_results.json (~3 minutes).
FLEET_ROUNDS ?= 7
bench-fleet-compare: build redis-server $(BENCH_VENVS)/litellm/.stamp
	$(BIN)/python benches/compare/fleet.py --rounds $(FLEET_ROUNDS) --write

# Usage-based routing under a provider's quota beside LiteLLM Router's usage-based-routing-v2
# (benches/compare/quota.py): a simulated OpenAI-compatible provider (loopback, in the
# driver) with two deployments of QUOTA_RPM requests per minute each, answering 429 with a
# Retry-After over it; per provider window (sliding, gcra) one subprocess per side, order
# alternating: ours in .venv (the working tree, built here), LiteLLM in .bench-venvs/litellm.
# Open-loop Poisson load at QUOTA_RATE/s for QUOTA_SPAN s per run, real minutes (LiteLLM
# keys its counters by the wall-clock minute), each run starting on a minute boundary.
# Writes the marked section of BENCHMARKS.md (bench-compare keeps it) and
# benches/compare/quota_results.json (~14 minutes).
QUOTA_SPAN ?= 150
QUOTA_RATE ?= 5
QUOTA_RPM ?= 100
bench-quota-compare: build $(BENCH_VENVS)/litellm/.stamp
	$(BIN)/python benches/compare/quota.py --span $(QUOTA_SPAN) --rate $(QUOTA_RATE) \
		--rpm $(QUOTA_RPM) --write

# Hedged requests against a simulated heavy-tailed provider (issue 18; benches/hedging_sim.py):
# hedging off, a fixed delay and "p95", ~30 s of real asyncio time; writes BENCHMARKS.md's
# section, benches/hedging.png and benches/hedging_results.json. matplotlib: the ours venv's.
bench-hedging: build $(BENCH_VENVS)/ours/.stamp
	$(BENCH_VENVS)/ours/bin/python benches/hedging_sim.py --write

# Open-loop load (issue 20; benches/compare/load.py): Poisson arrivals at a ladder of rates,
# each request timed from its scheduled start, through the bare `await model()`, ours
# (agenerate; generate from 8 / 32 threads) and LiteLLM Router, against one async model
# with a fixed simulated network delay; one subprocess per side per rate, sides rotated,
# then the paired runs (ours and the bare call as twins in one event loop, which resolve
# a few µs), LOAD_ROUNDS rounds. Writes the marked section of BENCHMARKS.md (bench-compare keeps it),
# benches/compare/load_results.json and load.png (~15 minutes). The driver runs in
# .bench-venvs/ours for matplotlib; the bare call and ours run in .venv (the working tree).
LOAD_ROUNDS ?= 3
bench-load: build $(BENCH_VENVS)/ours/.stamp $(BENCH_VENVS)/litellm/.stamp
	$(BENCH_VENVS)/ours/bin/python benches/compare/load.py --rounds $(LOAD_ROUNDS) --write \
		--notes benches/compare/load_notes.md

# The retry budget under an outage (issue 18; benches/retry_budget_sim.py): 1,000 clients
# of one manager on a virtual clock, the primary down for 30 simulated seconds, with and
# without retry_budget=0.2; writes the marked section of BENCHMARKS.md and
# benches/retry_budget.png (matplotlib from .bench-venvs/ours; ~2 minutes).
bench-retry-budget: build $(BENCH_VENVS)/ours/.stamp
	$(BENCH_VENVS)/ours/bin/python benches/retry_budget_sim.py --write

clean:
	rm -rf target $(VENV) python/agenticaiframework/*.so
