#!/usr/bin/env bash
# Online-model benchmarks: prequential quality on both datasets (the same command as
# `make evaluate DATA=...`), the River re-ranker comparison, the planted-structure check, and
# update+recommend speed with a profile. Results land in bench/results/online_*.json (+ .png).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
for data in movielens100k synthetic; do
    "$PY" -m stream_app.cli evaluate --dataset "$data" --out "bench/results/online_${data}.json"
done
"$PY" -m stream_app.cli evaluate --dataset movielens100k --limit 30000 \
    --variants streamrec_fm,streamrec_fixed_blend --no-baselines \
    --out bench/results/online_reranker_movielens100k.json
"$PY" bench/online_planted.py --out bench/results/online_planted.json
"$PY" bench/online_speed.py --out bench/results/online_speed.json
