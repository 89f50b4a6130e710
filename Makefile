# The two commands a newcomer needs: `make run` and `make test`. Everything they need that
# is missing (npm packages of the engines, cargo-lambda) is installed into the checkout.
SHELL := /bin/bash
.DEFAULT_GOAL := help

TOOLS := $(CURDIR)/.tools
CARGO_LAMBDA_VERSION := 1.9.2
export PATH := $(TOOLS)/venv/bin:$(PATH)

.PHONY: help prerequisites engines-deps cargo-lambda run test lint token invoke bench

help:
	@echo "make run    serve the API on 127.0.0.1:9000 with local engines, a demo inventory, its agents and the worker"
	@echo "make test   lint, then every test against local engines on free ports"
	@echo "make bench  subcloud-backup create against a bare-SDK baseline on local engines; the agent's peak memory backing up 1 GiB"
	@echo "make token  a token for the API of make run (ROLES=admin PROJECT=admin SUB=admin)"
	@echo "make invoke FN=subclouds-list   cargo lambda invoke FN with events/FN.json and an admin token"

prerequisites:
	@missing=""; \
	command -v cargo >/dev/null || missing="$$missing Rust(cargo)"; \
	{ command -v java >/dev/null && java -version 2>&1 | awk -F'"' '/version/ {split($$2, v, "."); exit !(v[1] >= 17)}'; } || missing="$$missing Java-17+"; \
	{ command -v node >/dev/null && node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)'; } || missing="$$missing Node-20+"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	{ command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1 && python3 -c 'import venv' 2>/dev/null; } || missing="$$missing Python3-with-pip-and-venv"; \
	if [ -n "$$missing" ]; then echo "missing prerequisites:$$missing" >&2; exit 1; fi

engines-deps: prerequisites
	@cd tools/emu && { [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund --loglevel=error; }

cargo-lambda: prerequisites
	@[ -x "$(TOOLS)/venv/bin/cargo-lambda" ] || { \
		echo "installing cargo-lambda $(CARGO_LAMBDA_VERSION) into .tools/venv"; \
		python3 -m venv "$(TOOLS)/venv" && \
		"$(TOOLS)/venv/bin/pip" install --quiet "cargo-lambda==$(CARGO_LAMBDA_VERSION)"; }

run: engines-deps cargo-lambda
	@tools/run-local

lint: prerequisites
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

test: engines-deps lint
	@tools/with-engines cargo test --workspace --locked

# Not part of make test: the slot's cost against a bare-SDK baseline (see BENCHMARKS.md).
bench: engines-deps
	@tools/with-engines cargo run --quiet --locked --profile perf -p dcbackup-bench --bin dcbackup-bench
	@cargo build --quiet --locked --profile perf -p dcbackup-agent
	@cargo run --quiet --locked --profile perf -p dcbackup-bench --bin agent-memory

ROLES ?= admin
PROJECT ?= admin
SUB ?= admin
token:
	@[ -f .local/run/lambda.env ] || { echo "start the stack with make run first" >&2; exit 1; }
	@set -a && source .local/run/lambda.env && set +a && \
		cargo run --quiet --locked -p dcbackup-dev -- mint-token --sub "$(SUB)" --roles "$(ROLES)" --project "$(PROJECT)"

# The sample event of a function, with a fresh admin token, through cargo lambda invoke.
FN ?= subclouds-list
invoke: cargo-lambda
	@token=$$($(MAKE) -s token ROLES=admin PROJECT=admin) && \
	python3 -c 'import json, sys; e = json.load(open(sys.argv[1])); e["headers"]["x-auth-token"] = sys.argv[2]; json.dump(e, sys.stdout)' \
		events/$(FN).json "$$token" > .local/run/event.json && \
	cargo lambda invoke $(FN) -A 127.0.0.1 -P 9000 --data-file .local/run/event.json
