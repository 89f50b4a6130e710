# The two commands a newcomer needs: `make run` and `make test`. Everything they need that
# is missing (npm packages of the engines, cargo-lambda) is installed into the checkout.
SHELL := /bin/bash
.DEFAULT_GOAL := help

TOOLS := $(CURDIR)/.tools
# Where make run keeps its state, and its API's port: make token and make invoke use the same.
RUN_DIR ?= .local/run
API_PORT ?= 9000
export RUN_DIR API_PORT
CARGO_LAMBDA_VERSION := 1.9.2
export PATH := $(TOOLS)/venv/bin:$(PATH)

.PHONY: help prerequisites engines-deps cargo-lambda run stop test lint token invoke bench

help:
	@echo "make run    serve the API on 127.0.0.1:9000 with local engines, a demo inventory, its agents and the worker"
	@echo "make stop   stop a make run whose terminal is gone (its recorded pids)"
	@echo "make test   lint, then every test against local engines on free ports"
	@echo "make bench  subcloud-backup create against a bare-SDK baseline on local engines; the agent's peak memory backing up 1 GiB"
	@echo "make token  a token for the API of make run (ROLES=admin PROJECT=admin SUB=admin)"
	@echo "make invoke FN=subclouds-list   cargo lambda invoke FN with events/FN.json (an admin token added to HTTP events); FN is one of:"
	@ls events | sed -n 's/\.json$$//p' | paste -sd' ' | fold -s -w 90 | sed 's/^/    /'

prerequisites:
	@missing=""; \
	command -v cargo >/dev/null || missing="$$missing Rust(cargo)"; \
	{ command -v java >/dev/null && java -version 2>&1 | awk -F'"' '/version/ {split($$2, v, "."); exit !(v[1] >= 17)}'; } || missing="$$missing Java-17+"; \
	{ command -v node >/dev/null && node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)'; } || missing="$$missing Node-20+"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	for tool in curl tar setsid; do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
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

# Stops a make run whose terminal is gone, from the pids it recorded in RUN_DIR.
stop:
	@tools/run-local stop

lint: prerequisites
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

test: engines-deps cargo-lambda lint
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
	@[ -f "$(RUN_DIR)/lambda.env" ] || { echo "start the stack with make run first" >&2; exit 1; }
	@set -a && source "$(RUN_DIR)/lambda.env" && set +a && \
		cargo run --quiet --locked -p dcbackup-dev -- mint-token --sub "$(SUB)" --roles "$(ROLES)" --project "$(PROJECT)"

# The sample event of a function through cargo lambda invoke; an HTTP event (one with headers)
# gets a fresh admin token, queue and schedule events go as they are. A function with several
# samples has events/<function>.<variant>.json: FN=scheduler.inline invokes scheduler.
FN ?= subclouds-list
invoke: cargo-lambda
	@[ -f "events/$(FN).json" ] || { echo "no events/$(FN).json; FN is one of: $$(ls events | sed -n 's/\.json$$//p' | paste -sd' ')" >&2; exit 2; }
	@token=$$($(MAKE) -s token ROLES=admin PROJECT=admin) && \
	python3 -c 'import json, sys; e = json.load(open(sys.argv[1])); "headers" in e and e["headers"].update({"x-auth-token": sys.argv[2]}); json.dump(e, sys.stdout)' \
		"events/$(FN).json" "$$token" > "$(RUN_DIR)/event.json" && \
	cargo lambda invoke $(firstword $(subst ., ,$(FN))) -A 127.0.0.1 -P $(API_PORT) --data-file "$(RUN_DIR)/event.json"
