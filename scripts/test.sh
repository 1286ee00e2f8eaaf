#!/usr/bin/env bash
# Set up everything the test suite needs (venv, package with test extras, the MCP
# Inspector CLI, Debian's headless chromium for the /ui tests) and run lint, type
# checks and the whole suite under coverage.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
# The colab kind's tests run the pinned google-colab-cli under Python 3.12 (.venv-colab);
# made once, skipped (with a note; the tests then skip) where no 3.12 or no index exists.
scripts/colab-venv.sh || true
# `npm ci` wipes node_modules: only when the pinned tools are missing or differ.
if [ -f package.json ] && ! npm ls --silent >/dev/null 2>&1; then
  npm ci --silent --no-audit --no-fund
fi
# The conformance suite needs Node >= 22: the pinned npm package `node` brings it (its
# install script fetches the binary); run that script again if it did not run.
if [ -d node_modules/node ] && ! node_modules/node/bin/node --version >/dev/null 2>&1; then
  npm rebuild node --silent
fi
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
# No re-runs: a flaky test is a bug to fix (README, Development). Coverage is measured
# in pytest and in the Python subprocesses of ours it starts ([tool.coverage] in
# pyproject.toml; the hook in tests/support/coverage_hook); the floor (fail_under) holds
# for the whole suite, not for a selection given as arguments.
# In parallel (pytest-xdist): most tests wait on subprocesses, kernels and the network, so
# more workers than the 2 cores pay (README, Development: measured figures). Arguments
# come after the defaults and win: `-n 0` runs serially.
rm -f .coverage .coverage.*
export COVERAGE_FILE="$PWD/.coverage" SMARTCOLAB_COVERAGE_RC="$PWD/pyproject.toml"
export PYTHONPATH="$PWD/tests/support/coverage_hook${PYTHONPATH:+:$PYTHONPATH}"
# Keep compiled bytecode (__pycache__, git-ignored) even where the environment turns it
# off: hundreds of Python processes start from the same sources in one run, and pytest
# caches its rewritten test modules the same way.
unset PYTHONDONTWRITEBYTECODE
workers=(-n "${SMARTCOLAB_TEST_WORKERS:-4}" --dist worksteal)
# The 25 slowest tests end every log (CI's included): where the suite's time goes.
set +e
.venv/bin/python -m coverage run -m pytest "${workers[@]}" --durations=25 "$@"
status=$?
set -e
floor=()
if [ $# -gt 0 ]; then floor=(--fail-under=0); fi
# A suite that passes but falls under the floor fails; a failing suite keeps its status.
if ! { .venv/bin/python -m coverage combine -q && .venv/bin/python -m coverage report "${floor[@]}"; } \
    && [ "$status" = 0 ]; then
  status=2
fi
exit "$status"
