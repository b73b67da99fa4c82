# Development tasks. A fresh machine needs only Python 3.11+ and make: every target that
# runs project code first builds .venv from the hash-pinned lock files.
#
#   make serve                     install the daemon alone, then run it (embedded PostgreSQL)
#   make test                      install everything (the dev tools too), then run the tests
#   make PYTHON=python3.12 install build .venv with another interpreter (`make clean` first
#                                  if .venv already exists)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A different uv (say one already on PATH) may be passed as `make lock UV=uv`.
UV ?= $(BIN)/uv
# Extra arguments: `make test PYTEST_ARGS="-k email -x"`, `make lock LOCK_ARGS=--upgrade`.
PYTEST_ARGS ?=
LOCK_ARGS ?=
BENCH_ARGS ?=
# Locks are resolved against PyPI whatever index this machine is configured with, so that
# they hold no local paths or mirrors.
LOCK_INDEX ?= https://pypi.org/simple

# bench/ may not exist yet; ruff fails on a missing path.
LINT_PATHS := $(wildcard notifyd tests bench)
# What is installed: the daemon and its embedded PostgreSQL (requirements-serve.lock), or
# that and every development tool (requirements-dev.lock, a superset of the same versions).
SERVE_STAMP := $(VENV)/.installed-serve
STAMP := $(VENV)/.installed

# One resolution for every platform and every supported Python (3.11 is the floor).
UV_COMPILE = $(UV) pip compile pyproject.toml --universal --python-version 3.11 \
	--generate-hashes --no-config --index-url $(LOCK_INDEX) --no-emit-index-url \
	--no-emit-find-links --custom-compile-command "make lock" --quiet $(LOCK_ARGS)

.DEFAULT_GOAL := help
.PHONY: help install install-serve serve test lint format typecheck check audit lock bench clean

help:
	@echo "make install    create $(VENV) and install notifyd with its dev tools (PYTHON=$(PYTHON))"
	@echo "make install-serve  create $(VENV) with notifyd and its embedded PostgreSQL only"
	@echo "make serve      install-serve, then run the daemon with an embedded PostgreSQL"
	@echo "make test       install, then run the whole test suite"
	@echo "make lint       ruff check and ruff format --check"
	@echo "make format     ruff format and ruff check --fix"
	@echo "make typecheck  mypy --strict on the package"
	@echo "make check      lint, typecheck and test"
	@echo "make audit      check the locked dependencies for known vulnerabilities"
	@echo "make lock       regenerate the lock files (requirements*.lock)"
	@echo "make bench      run the benchmarks (BENCH_ARGS=--quick for a short run)"
	@echo "make clean      remove $(VENV) and caches (not the embedded database in .notifyd/)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the locks or the project metadata change.
# A lock names every package, so pip installs exactly it and resolves nothing (--no-deps),
# then checks that what is installed fits together. Left to resolve, pip (pypa/pip#9644,
# open) looks a dependency asked for with an extra (`pkg[extra]>=1`) up on the index
# instead of taking the pinned one, and in --require-hashes mode refuses the install as
# soon as that package has a release newer than the lock's: a fresh clone stopped
# installing the day CacheControl 0.15 came out.
$(SERVE_STAMP): requirements-serve.lock pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --require-hashes --no-deps -r requirements-serve.lock
	$(BIN)/python -m pip install --no-deps -e .
	$(BIN)/python -m pip check
	@touch $@

$(STAMP): requirements-dev.lock pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --require-hashes --no-deps -r requirements-dev.lock
	$(BIN)/python -m pip install --no-deps -e .
	$(BIN)/python -m pip check
	@touch $@

install-serve: $(SERVE_STAMP)

install: $(STAMP)

# Running the daemon needs neither the test tools nor the type checker (a fraction of the
# size); after `make test` everything it needs is installed already.
serve: install-serve
	$(BIN)/notifyd serve

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

format: install
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

typecheck: install
	$(BIN)/mypy

check: lint typecheck test

audit: install
	$(BIN)/python .ci/audit.py

lock:
	@if [ "$(UV)" = "$(BIN)/uv" ] && [ ! -x "$(UV)" ]; then \
		[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV); \
		$(BIN)/python -m pip install uv; \
	fi
	$(UV_COMPILE) --extra dev -o requirements-dev.lock
	@# `make serve`'s: the daemon with its embedded PostgreSQL, at the dev lock's versions, so
	@# that `make test` after it only adds packages.
	$(UV_COMPILE) --extra embedded -c requirements-dev.lock -o requirements-serve.lock
	@# The Docker image's: the daemon alone (its database is external).
	$(UV_COMPILE) -o requirements.lock
	@# The build backend, pinned too: the Docker image builds the wheel from it offline.
	echo "hatchling>=1.25" | $(subst pyproject.toml,-,$(UV_COMPILE)) -o requirements-build.lock

# Figures, not pass/fail: `make bench BENCH_ARGS=--quick` for a 3-minute run, or e.g.
# BENCH_ARGS="--only drain --sizes 20000 --profile py-spy" (see bench/README.md).
bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
