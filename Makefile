# Greenlight developer entry points. Every target does its own set-up (scripts/bootstrap).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export SAM_CLI_TELEMETRY := 0

.PHONY: venv haproxy github-openapi demo test unit lint typecheck template build bench lock sandbox-up sandbox-down clean

venv:
	@scripts/bootstrap

## The main job in the local sandbox (no AWS, no cluster, no Docker).
demo: venv haproxy
	$(BIN)/greenlight demo

## The whole test command CI runs: linters, template checks and the test suite, in
## PYTEST_WORKERS processes (pytest-xdist), a module's tests in one process (its module-scoped
## sandbox is built once). Sandboxes side by side take their own loopback addresses.
PYTEST_WORKERS ?= 2
test: venv haproxy github-openapi lint typecheck template
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadfile

haproxy:
	@scripts/ensure-haproxy

## GitHub's OpenAPI description (npm @octokit/openapi) for the notifier's contract test.
github-openapi:
	@scripts/ensure-github-openapi

unit: venv
	$(BIN)/pytest -q tests/unit

lint: venv
	$(BIN)/ruff check layers functions tools tests scripts
	$(BIN)/ruff format --check layers functions tools tests scripts
	$(BIN)/lint-imports

typecheck: venv
	$(BIN)/mypy

template: venv
	$(BIN)/cfn-lint --append-rules cfn_lint_serverless.rules -- template.yaml
	$(BIN)/sam validate --lint --region eu-west-1 --template template.yaml

build: venv
	$(BIN)/sam build --template template.yaml
	$(BIN)/python scripts/prune_layer.py .aws-sam/build/GreenlightLayer

## Re-pin the layer's dependencies for the Lambda runtime (python3.12 on arm64).
lock: venv
	$(BIN)/python -m uv pip compile --quiet --python-version 3.12 \
	  --python-platform aarch64-manylinux_2_28 --no-header --annotation-style line \
	  layers/greenlight/requirements.in -o layers/greenlight/requirements.txt

bench: build
	$(BIN)/python tests/benchmarks/bench_startup.py
	$(BIN)/python tests/benchmarks/bench_render.py
	$(BIN)/python tests/benchmarks/bench_reload.py
	$(BIN)/python tests/benchmarks/bench_flips.py
	$(BIN)/python tests/benchmarks/bench_night.py
	$(BIN)/python tests/benchmarks/bench_night_shrink.py

sandbox-up: venv haproxy
	$(BIN)/greenlight sandbox up

sandbox-down: venv
	$(BIN)/greenlight sandbox down

clean:
	rm -rf .aws-sam .greenlight .pytest_cache .mypy_cache .ruff_cache
