#!/usr/bin/env bash
# Online-model benchmarks: prequential quality on both datasets, then update+recommend speed.
# Results: bench/results/online_{movielens100k,synthetic}.json (+ .png), online_speed.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
for data in movielens100k synthetic; do
    "$PY" -m stream_app.cli evaluate --dataset "$data" \
        --variants streamrec_fixed_blend,streamrec_with_usercf \
        --out "bench/results/online_${data}.json"
done
"$PY" bench/online_speed.py --out bench/results/online_speed.json
"$PY" bench/online_planted.py --out bench/results/online_planted.json
