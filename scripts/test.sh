#!/usr/bin/env bash
# Install rectune with its dev and peers extras into .venv and run lint, type checks and tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -c constraints.txt -e ".[dev,peers]"
echo "== ruff"; ruff check src tests benchmarks
echo "== mypy"; mypy
echo "== pytest"; python -m pytest -q "$@"
