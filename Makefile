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
# The template's linters (make lint), and what installs them.
UV_VERSION := 0.13.8
CFN_LINT_VERSION := 1.58.0
SAM_CLI_VERSION := 1.170.0
CHECKOV_VERSION := 3.3.30
# checkov's findings on infra/template.yaml that infra/README.md answers ("checkov"); any
# other fails make lint.
CHECKOV_ANSWERED := CKV_AWS_18,CKV_AWS_21,CKV_AWS_27,CKV_AWS_115,CKV_AWS_116,CKV_AWS_117,CKV_AWS_119,CKV_AWS_158,CKV_AWS_173
export PATH := $(TOOLS)/venv/bin:$(PATH)
# What make test and make run run against: local (DynamoDB Local + fauxqs) or localstack.
ENGINES ?= local
export ENGINES
ifeq ($(filter $(ENGINES),local localstack),)
$(error ENGINES must be local (DynamoDB Local + fauxqs) or localstack, not '$(ENGINES)')
endif
# The engines' installs the chosen ENGINES need before test and run.
ENGINE_DEPS := engines-deps $(if $(filter localstack,$(ENGINES)),localstack)

.PHONY: help prerequisites engines-deps cargo-lambda lint-tools localstack py-baseline run stop test test-build lint lint-rust lint-template package token invoke bench

help:
	@echo "make run    serve the API on 127.0.0.1:9000 with local engines, a demo inventory, its agents and the worker"
	@echo "make stop   stop a make run whose terminal is gone (its recorded pids)"
	@echo "make test   lint, then every test against local engines on free ports"
	@echo "            ENGINES=localstack: run or test against LocalStack instead of DynamoDB Local + fauxqs"
	@echo "make bench  the performance targets (group and single operations, cold start, own CPU) against their baselines into BENCHMARKS.md; the agent's peak memory backing up 1 GiB"
	@echo "make package  every function built for arm64 (release) into target/lambda/<function>/bootstrap.zip, for sam deploy"
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

# Each linter in its own virtualenv (their dependencies clash), every package pinned by
# tools/lint/<venv>.txt, installed by a pinned uv; reinstalled when a pin or that file
# changes (tools/lint/install).
lint-tools: prerequisites
	@[ "$$(cat "$(TOOLS)/uv/.pins" 2>/dev/null)" = "uv==$(UV_VERSION)" ] || { \
		echo "installing uv $(UV_VERSION) into .tools/uv"; rm -rf "$(TOOLS)/uv" && \
		python3 -m venv "$(TOOLS)/uv" && \
		"$(TOOLS)/uv/bin/pip" install --quiet --disable-pip-version-check "uv==$(UV_VERSION)" && \
		echo "uv==$(UV_VERSION)" > "$(TOOLS)/uv/.pins"; }
	@export UV="$(TOOLS)/uv/bin/uv"; \
	tools/lint/install "$(TOOLS)/sam" tools/lint/sam.txt \
		"cfn-lint==$(CFN_LINT_VERSION)" "aws-sam-cli==$(SAM_CLI_VERSION)" & sam=$$!; \
	tools/lint/install "$(TOOLS)/checkov" tools/lint/checkov.txt "checkov==$(CHECKOV_VERSION)" & checkov=$$!; \
	wait $$sam && wait $$checkov

# LocalStack for ENGINES=localstack: one that answers on LOCALSTACK_ENDPOINT is used as is;
# otherwise the pinned localstack-core is installed into .tools/localstack (once) and the
# engines start it in host mode, offline. make run looks on LocalStack's usual port.
localstack: engines-deps
	@tools/emu/engines install

run: export LOCALSTACK_ENDPOINT ?= http://127.0.0.1:4566
run: $(ENGINE_DEPS) cargo-lambda
	@tools/run-local

# Stops a make run whose terminal is gone, from the pids it recorded in RUN_DIR.
stop:
	@tools/run-local stop

# The Rust code (format, clippy) and the template (its linters, installed first) side by
# side, so a first install's downloads overlap clippy's build (with warm caches it is about
# even: the installs and linters take CPU too).
lint:
	@$(MAKE) --no-print-directory -j2 lint-rust lint-template

lint-rust:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

lint-template: lint-tools
	"$(TOOLS)/sam/bin/cfn-lint" infra/template.yaml
	SAM_CLI_TELEMETRY=0 "$(TOOLS)/sam/bin/sam" validate --lint --template-file infra/template.yaml --region us-east-1
	"$(TOOLS)/checkov/bin/checkov" --quiet --compact --skip-download --framework cloudformation \
		--file infra/template.yaml --skip-check $(CHECKOV_ANSWERED)

# Not part of make test: a release arm64 build of every function (CPU-heavy).
package: cargo-lambda
	@tools/package

# make test's build is its clippy check too: the workspace's own crates are compiled through
# clippy-driver, as `cargo clippy` runs them but with code generation, so the dependencies are
# compiled once instead of checked for clippy and then compiled (measured on 2 cores, cold:
# 245 s against 351). Every cargo command of the run (nextest's, make run's inside the README
# test) inherits the wrapper and finds the crates built; CLIPPY_ARGS is how cargo clippy hands
# clippy-driver its `-- -D warnings`. make lint keeps cargo clippy, which compiles nothing.
CLIPPY_DRIVER := $(shell command -v clippy-driver)
test test-build: export RUSTC_WORKSPACE_WRAPPER := $(CLIPPY_DRIVER)
test test-build: export CLIPPY_ARGS := -D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__

# What the tests run, linted, and the formatting: the targets `cargo clippy --all-targets`
# checks, but only the harnesses with tests (--all-targets would build the functions' empty
# ones, which test = false spares), then every binary as make run builds it.
# CLIPPY_ARGS is cargo-clippy's own hand-over, not a documented interface: a known warning
# must still fail, or make test would stop failing on warnings without a word.
test-build:
	@[ -n "$(CLIPPY_DRIVER)" ] || { echo "make test lints through clippy-driver: rustup component add clippy" >&2; exit 1; }
	@out=$$(echo 'pub fn empty(v: &[u8]) -> bool { v.len() == 0 }' | \
		"$(CLIPPY_DRIVER)" - --crate-type lib --emit=metadata -o /dev/null 2>&1) && \
		{ echo "make test: clippy-driver let a warning through; CLIPPY_ARGS is no longer how it takes -D warnings" >&2; exit 1; }; \
	case "$$out" in *len_zero*) ;; *) echo "make test: clippy-driver failed: $$out" >&2; exit 1;; esac
	cargo fmt --all --check
	cargo test --workspace --tests --bench '*' --no-run --locked
	cargo build --workspace --bins --locked

# With cargo-nextest (on the CI machines), test binaries run side by side as .config/nextest.toml
# orders them; without it, cargo test runs them one after another.
# The installs and the template's linters run beside the build (one make, so each runs once).
test:
	@$(MAKE) --no-print-directory -j4 $(ENGINE_DEPS) cargo-lambda lint-template test-build
	@if cargo nextest --version >/dev/null 2>&1; then \
		tools/with-engines cargo nextest run --workspace --locked; \
	else \
		echo "cargo-nextest is not installed: cargo test runs the test binaries one at a time (slower)"; \
		tools/with-engines cargo test --workspace --locked; \
	fi

# P3's baseline (make bench): the same cold start in Python 3.11 + boto3 + PyJWT through the
# Lambda runtime interface client, pinned, in its own venv.
PY_BASELINE := $(TOOLS)/py-baseline
py-baseline: prerequisites
	@"$(PY_BASELINE)/bin/python" -c 'import awslambdaric, boto3, jwt' 2>/dev/null || { \
		echo "installing the Python cold-start baseline into .tools/py-baseline"; \
		python3 -m venv "$(PY_BASELINE)" && \
		"$(PY_BASELINE)/bin/pip" install --quiet "awslambdaric==4.2.2" "boto3==1.43.11" "PyJWT==2.10.1"; }

# Not part of make test: issue #17's targets P1-P4 against their baselines, written into
# BENCHMARKS.md (see there), then the agent's peak memory.
BENCH_TARGET_DIR = $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
bench: engines-deps py-baseline
	@cargo build --quiet --locked --release -p subcloud-backup-create
	@CRITERION_HOME="$(CURDIR)/.local/bench/criterion" \
		cargo bench --quiet --locked --profile perf -p dcbackup-bench --bench own_cpu
	@DCBACKUP_BENCH_FUNCTION="$(BENCH_TARGET_DIR)/release/subcloud-backup-create" \
		DCBACKUP_BENCH_PYTHON="$(PY_BASELINE)/bin/python" \
		DCBACKUP_BENCH_CRITERION="$(CURDIR)/.local/bench/criterion" \
		DCBACKUP_BENCH_REPORT="$(CURDIR)/BENCHMARKS.md" \
		tools/with-engines cargo run --quiet --locked --profile perf -p dcbackup-bench --bin dcbackup-bench
	@cargo build --quiet --locked --profile perf -p dcbackup-agent
	@cargo run --quiet --locked --profile perf -p dcbackup-bench --bin agent-memory

ROLES ?= admin
PROJECT ?= admin
SUB ?= admin
# `--bin`, not `-p`: features resolved over the whole workspace, as make run built it, so
# nothing is compiled again (-p dcbackup-dev alone rebuilt ~70 crates: tests/tests/build.rs).
token:
	@[ -f "$(RUN_DIR)/lambda.env" ] || { echo "start the stack with make run first" >&2; exit 1; }
	@set -a && source "$(RUN_DIR)/lambda.env" && set +a && \
		cargo run --quiet --locked --bin dcbackup-dev -- mint-token --sub "$(SUB)" --roles "$(ROLES)" --project "$(PROJECT)"

# The sample event of a function through cargo lambda invoke; an HTTP event (one with headers)
# gets a fresh admin token, queue and schedule events go as they are. A function with several
# samples has events/<function>.<variant>.json: FN=scheduler.inline invokes scheduler.
FN ?= subclouds-list
invoke: cargo-lambda
	@[ -f "events/$(FN).json" ] || { echo "no events/$(FN).json; FN is one of: $$(ls events | sed -n 's/\.json$$//p' | paste -sd' ')" >&2; exit 2; }
	@token=$$($(MAKE) -s token ROLES=admin PROJECT=admin) && \
	event=$$(mktemp "$(RUN_DIR)/event.XXXXXX") && trap 'rm -f "$$event"' EXIT && \
	python3 -c 'import json, sys; e = json.load(open(sys.argv[1])); "headers" in e and e["headers"].update({"x-auth-token": sys.argv[2]}); json.dump(e, sys.stdout)' \
		"events/$(FN).json" "$$token" > "$$event" && \
	cargo lambda invoke $(firstword $(subst ., ,$(FN))) -A 127.0.0.1 -P $(API_PORT) --data-file "$$event"
