#!/usr/bin/env bash
# Set up everything the test suite needs (venv, package, test extras, the MCP
# Inspector CLI) and run the whole suite plus lint and type checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
if [ -f package.json ]; then npm ci --silent --no-audit --no-fund; fi
.venv/bin/ruff check src tests bench
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
