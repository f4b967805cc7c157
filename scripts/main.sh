#!/usr/bin/env bash
# Install rectune into .venv and run the main job end to end.
# MovieLens 100K comes from $RECTUNE_DATA/ml-100k (a local copy in GroupLens' layout),
# the download cache, or a checksummed download; with none of them it says so and
# uses the synthetic MovieLens-shaped set, clearly labelled.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -c constraints.txt -e .
OUT=${1:-runs/movielens}
rectune run examples/movielens.toml --out "$OUT"
