"""Batched session-model inference latency, with baselines measured in the same run.

Loads a verified MovieLens-sized version from a model store (the newest one trained on
movielens100k with the session protocol, as ``bench/session.sh`` produces), takes 1,000 real
session prefixes from that protocol's test split, and times, on the same prefixes:

- ``gru_batched``: ``SessionModel.recommend(prefixes, k=20)``, one call, the compiled path;
- ``gru_eager``: the same model called directly (eager Keras call + NumPy top-k), the baseline
  the compiled path is meant to beat;
- ``item_knn``: the item-kNN baseline's scores + NumPy top-k for the same prefixes;
- ``gru_single``: one prefix per call, for the per-session latency.

Each timing is the median of ``--repeats`` runs after warm-up. Training times are copied from the
manifests of the versions in the store. Results go to ``bench/results/session_bench.json``.
The machine is shared; other processes running at the same time make every number pessimistic,
so the load average is recorded with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from models.datasets import load_dataset
from models.session.artifacts import list_versions, load_session_model, read_manifest
from models.session.baselines import ItemKNN
from models.session.data import FIRST_ITEM_INDEX, Vocabulary, left_pad, session_protocol


def _median_ms(fn: Any, repeats: int) -> dict[str, float]:
    fn()  # warm-up (tracing, caches)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000.0)
    return {
        "median_ms": round(statistics.median(times), 3),
        "min_ms": round(min(times), 3),
        "max_ms": round(max(times), 3),
        "repeats": repeats,
    }


def _pick_version(store: Path) -> Path:
    for path in reversed(list_versions(store)):
        manifest = read_manifest(path)
        if manifest.get("dataset") == "movielens100k" and manifest.get("protocol") == "session":
            return path
    raise SystemExit(f"no movielens100k/session version in {store}; run bench/session.sh first")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("bench/results/session_bench.json"))
    args = parser.parse_args()

    path = _pick_version(args.store)
    load_started = time.perf_counter()
    model = load_session_model(path)
    load_seconds = time.perf_counter() - load_started
    vocab: Vocabulary = model.vocabulary

    split = session_protocol(load_dataset("movielens100k").events)
    cases = split.test[: args.sessions]
    if len(cases) < args.sessions:
        raise SystemExit(f"only {len(cases)} test prefixes available")
    prefixes = [list(c.prefix) for c in cases]
    encoded = [vocab.encode(p) for p in prefixes]
    knn = ItemKNN(vocab.size).fit([vocab.encode(s.items) for s in split.train])
    k = args.k

    def gru_batched() -> Any:
        return model.recommend(prefixes, k)

    def gru_eager() -> Any:
        x = left_pad([e[-model.max_len :] for e in encoded])
        reps = model.head.vectors(x, training=False)[:, -1, :]
        scores = model.head.logits(reps).numpy()
        scores[:, :FIRST_ITEM_INDEX] = -np.inf
        return np.argpartition(-scores, k, axis=1)[:, :k]

    def knn_topk() -> Any:
        scores = knn.score(encoded)
        return np.argpartition(-scores, k, axis=1)[:, :k]

    def gru_single() -> Any:
        return model.recommend(prefixes[:1], k)

    # Same answers from both GRU paths (sets of the top-k), so the comparison is like for like.
    batched_sets = [{vocab.index(i) for i, _ in row} for row in gru_batched()]
    eager_sets = [set(row.tolist()) for row in gru_eager()]
    agreement = float(
        np.mean([len(a & b) / k for a, b in zip(batched_sets, eager_sets, strict=True)])
    )

    timings = {
        "gru_batched": _median_ms(gru_batched, args.repeats),
        "gru_eager": _median_ms(gru_eager, args.repeats),
        "item_knn": _median_ms(knn_topk, args.repeats),
        "gru_single": _median_ms(gru_single, args.repeats * 5),
    }
    training = {}
    for version in list_versions(args.store):
        manifest = read_manifest(version)
        key = f"{manifest.get('dataset')}/{manifest.get('protocol')}"
        training[key] = {
            "version": manifest["version"],
            "train_seconds": manifest.get("train_seconds"),
            "updates": manifest.get("updates"),
            "best_epoch": manifest.get("best_epoch"),
        }
    results = {
        "benchmark": "session_infer",
        "model_version": model.version,
        "vocab_size": vocab.size,
        "sessions": len(prefixes),
        "mean_prefix_length": round(float(np.mean([len(p) for p in prefixes])), 2),
        "max_len": model.max_len,
        "k": k,
        "load_and_verify_seconds": round(load_seconds, 3),
        "timings": timings,
        "speedup_batched_vs_eager": round(
            timings["gru_eager"]["median_ms"] / timings["gru_batched"]["median_ms"], 2
        ),
        "topk_agreement_batched_vs_eager": round(agreement, 4),
        "bar_1000_sessions_under_100ms": timings["gru_batched"]["median_ms"] < 100.0,
        "training": training,
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_1m": os.getloadavg()[0],
            "python": platform.python_version(),
            "tf_threads_env": os.environ.get("STREAMREC_TF_THREADS", ""),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results["timings"], indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
