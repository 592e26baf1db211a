#!/usr/bin/env bash
# The end-to-end benchmark (the future `make bench`): needs the stack (`make stack-up`) running.
# Writes bench/results/e2e.json: MovieLens-100K first (top-level keys), then the synthetic stream
# (E2E_SYNTHETIC_EVENTS, default 1,000,000) under "runs". Extra arguments go to bench/e2e.py,
# e.g. `bash bench/e2e.sh --dataset movielens100k` for the MovieLens run alone.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}
[[ -x $PY ]] || PY=python3
if [[ $# -eq 0 ]]; then
  # freshness also at a quarter and an eighth of the one-worker rate: the curve, not one point
  set -- --dataset movielens100k --dataset synthetic --freshness-extra 0.25 0.125
fi
exec "$PY" bench/e2e.py --synthetic-events "${E2E_SYNTHETIC_EVENTS:-1000000}" "$@"
