#!/usr/bin/env bash
# Set up a virtual environment (CPU torch, the package with its test extra), lint, and run the CPU test suite.
# Usage: bash scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SSPIR_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install --quiet --upgrade pip
"$PY" -m pip install --quiet -r requirements/torch-cpu.txt
"$PY" -m pip install --quiet -e ".[test]"
"$PY" -m ruff check --quiet src tests examples
exec "$PY" -m pytest -n "${SSPIR_TEST_WORKERS:-2}" "$@"
