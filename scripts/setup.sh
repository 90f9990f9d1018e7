#!/usr/bin/env bash
# Creates .venv beside this repository (if missing) and installs rcf-exchange into it
# with its development and test dependencies. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'
echo "rcf-exchange installed in .venv ($(.venv/bin/rcf --version))"
