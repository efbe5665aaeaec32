# The two set-up commands of the README: `make demo` (the main job) and `make test` (the suite).
# Both create .venv on first use. Python 3.11+ is the only prerequisite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# `make demo` needs only the runtime, the CLI and the local stack (`.[local]`); the development tools
# (sam, cfn-lint, mypy, ruff, pytest, schemathesis, matplotlib: `.[dev]`, which includes `.[local]`)
# come with the first target that uses them. Each install leaves its stamp; the dev install both.
STAMP_LOCAL := $(VENV)/.installed-local
ASL_VALIDATOR := deploy_check/node_modules/.bin/asl-validator
# sam build needs the Lambda runtime's interpreter (python3.12) on PATH; pyenv provides it here.
SAM_PYENV ?= 3.11.7:3.12.1
# The bytecode tag of template.yaml's Runtime (python3.12 -> cpython-312): what the layer's .pyc must carry.
RUNTIME_PYC := cpython-$(subst .,,$(shell sed -n 's/^ *Runtime: *python//p' template.yaml | head -1))

.PHONY: venv venv-local test test-fast test-slow lint lint-template deploy-check build demo bench chaos clean

venv: $(STAMP)

venv-local: $(STAMP_LOCAL)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# setuptools warns on every editable install of a package laid out in several folders ("Editable
# installation ... folders with the same name"): nothing here to act on, so that one notice is filtered.
EDITABLE_QUIET := PYTHONWARNINGS="ignore:Editable installation"

$(STAMP_LOCAL): pyproject.toml | $(BIN)/python
	$(EDITABLE_QUIET) $(BIN)/pip install --quiet -e '.[local]'
	touch $(STAMP_LOCAL)

$(STAMP): pyproject.toml | $(BIN)/python
	$(EDITABLE_QUIET) $(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP) $(STAMP_LOCAL)

## The whole suite: template checks, unit, integration (moto + simulator) and end-to-end tests.
test: venv lint-template
	$(BIN)/pytest -m "not slow"

test-slow: venv
	$(BIN)/pytest -m slow

## ruff, mypy (the packages, then each handler: they are all modules named app), cfn-lint (with the
## serverless rules and ours, deploy_check/cfn_rules) and sam validate --lint.
lint: venv lint-template
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	for handler in functions/*/app.py; do $(BIN)/mypy $$handler || exit 1; done

lint-template: venv
	$(BIN)/cfn-lint template.yaml --append-rules cfn_lint_serverless.rules --append-rules deploy_check/cfn_rules
	SAM_CLI_TELEMETRY=0 $(BIN)/sam validate --lint --region us-east-1

## What fails a real `sam deploy` that the local stack cannot show: the template through cfn-lint with
## the serverless rules and our own (deploy_check/cfn_rules: encoded ResourcePath, reserved concurrency,
## the alarm topic's key, access logs after the account's role, OpenApiVersion), and the state machine,
## substitutions filled in, through asl-validator (npm, pinned in deploy_check/package-lock.json).
deploy-check: lint-template $(ASL_VALIDATOR)
	$(BIN)/python -m deploy_check.asl_check template.yaml

$(ASL_VALIDATOR): deploy_check/package.json deploy_check/package-lock.json
	npm ci --prefix deploy_check --no-audit --no-fund
	touch $@

## sam build: pip fetches the layer's arm64 cp312 wheels from the package index, and python3.12 (on PATH; pyenv
## provides it here) compiles the layer's bytecode. The build fails if a layer module lacks the runtime's .pyc or
## a .pyc of another Python is left (Lambda would compile that module from source at every cold start).
build: venv
	SAM_CLI_TELEMETRY=0 PYENV_VERSION=$(SAM_PYENV) PATH="$(abspath $(BIN)):$$PATH" $(BIN)/sam build
	@cd .aws-sam/build/CommonLayer && \
	expected=$$(find . -name '*.py' | sed -E 's#(.*)/([^/]*)\.py$$#\1/__pycache__/\2.$(RUNTIME_PYC).pyc#' | sort) && \
	found=$$(find . -name '*.pyc' | sort) && \
	if [ "$$expected" != "$$found" ]; then \
		echo "CommonLayer's bytecode is not all $(RUNTIME_PYC) (layers/common/Makefile):"; \
		printf '%s\n' "$$expected" > .expected-pyc; printf '%s\n' "$$found" | diff .expected-pyc - | head -20; \
		rm -f .expected-pyc; exit 1; \
	fi

## The main job: a batch of videos end to end on the embedded local stack; the videos land in out/.
demo: venv-local
	$(BIN)/kling-pipeline demo --out out/

## This pipeline and a naive 10-second polling worker (bench/baseline.py) side by side (bench/results.json, docs/benchmarks.md and .png,
## the README's figures). About 15 minutes on 2 cores.
bench: venv
	$(BIN)/python -m bench

## The fault-injection suite: 500 jobs through every fault, each alone and all together (bench/chaos.json).
## About 15 minutes on 2 cores; a 60-job slice of it runs in make test.
chaos: venv
	$(BIN)/python -m bench chaos --jobs 500

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache out
