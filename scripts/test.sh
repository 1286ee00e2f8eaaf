#!/usr/bin/env bash
# Set up everything the test suite needs (venv, package with test extras, the MCP
# Inspector CLI, Debian's headless chromium for the /ui tests) and run the whole
# suite plus lint and type checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
if [ -f package.json ]; then npm ci --silent --no-audit --no-fund; fi
# The /ui tests drive Debian's chromium through chromedriver (no browser download).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "note: install chromium and chromium-driver (as root) or the /ui browser tests skip" >&2
  fi
fi
export SMARTCOLAB_ARTIFACTS=${SMARTCOLAB_ARTIFACTS:-results/artifacts}
.venv/bin/ruff check src tests bench
.venv/bin/mypy
# Tests drive real processes on a 2-core machine; a failure is re-run once, and the
# summary line counts reruns, so a timing flake is visible without failing the build.
.venv/bin/python -m pytest --reruns 1 --reruns-delay 2 "$@"
