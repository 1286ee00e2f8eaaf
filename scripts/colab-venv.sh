#!/usr/bin/env bash
# Make .venv-colab: a Python 3.12+ environment with the pinned google-colab-cli, for the
# colab kind's tests (tests/e2e/test_colab_kind.py) and for a bridge that runs on an older
# Python (name .venv-colab/bin/python in $SMARTCOLAB_COLAB_PYTHON). Safe to run again: it
# does nothing when the environment already has the pinned version. Without a 3.12
# interpreter (python3.12 on PATH, or pyenv's) it says so and exits 0: the tests then skip.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.7.5
if [ -x .venv-colab/bin/python ] && .venv-colab/bin/python -c \
    "import importlib.metadata as m, sys; sys.exit(m.version('google-colab-cli') != '$VERSION')" 2>/dev/null; then
  exit 0
fi
PY=""
for candidate in "${COLAB_PYTHON312:-}" python3.13 python3.12 \
    "$(PYENV_VERSION=3.12.1 pyenv which python 2>/dev/null || true)" \
    "$HOME/.pyenv/versions/3.12.1/bin/python" /root/.pyenv/versions/3.12.1/bin/python; do
  if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 \
      && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
    PY=$candidate; break
  fi
done
if [ -z "$PY" ]; then
  echo "note: no Python 3.12+ found: the colab kind's tests will skip" >&2
  exit 0
fi
rm -rf .venv-colab
"$PY" -m venv .venv-colab
if ! .venv-colab/bin/python -m pip install -q --disable-pip-version-check "google-colab-cli==$VERSION"; then
  echo "note: could not install google-colab-cli $VERSION: the colab kind's tests will skip" >&2
  rm -rf .venv-colab
fi
