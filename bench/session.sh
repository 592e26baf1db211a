#!/usr/bin/env bash
# Session-model benchmarks: quality on both protocols (GRU vs popularity, item-kNN, Markov),
# training time, and batched inference latency. Writes bench/results/session_*.json and PNGs.
# Usage: bash bench/session.sh   (from the repository root; ~5 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
STORE=${STORE:-$(mktemp -d -t streamrec-session-bench-XXXXXX)}
OUT=bench/results
mkdir -p "$OUT"
train() {
    "$PY" -m stream_app.cli train-session --store "$STORE" --publish never --no-progress "$@"
}
train --dataset movielens100k --protocol leave-one-out --out "$OUT/session_movielens100k_loo.json"
train --dataset movielens100k --protocol loo --tie-order file --out "$OUT/session_movielens100k_loo_file_order.json"
train --dataset movielens100k --protocol session --out "$OUT/session_movielens100k_session.json"
train --dataset synthetic --protocol session --out "$OUT/session_synthetic_session.json"
"$PY" bench/session_infer.py --store "$STORE" --out "$OUT/session_bench.json"
"$PY" bench/session_oracle.py --out "$OUT/session_synthetic_oracle.json"
echo "model versions kept in $STORE"
