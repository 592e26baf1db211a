"""Update + recommend cost of the online models on MovieLens-100K, with a profile.

For each model: learn the first ``--warm`` events, then time ``rank(user, 10)`` + ``learn_one``
on the next ``--measure`` events (the prequential loop without the metrics). CPU time of this
process (one core) is the headline, wall time is reported too (it includes other load on a
shared machine). The baselines are measured in the same run, on the same events, so the figures
can be compared. A cProfile of our model says where the time goes.

    python bench/online_speed.py --out bench/results/online_speed.json
"""

from __future__ import annotations

import argparse
import cProfile
import platform
import pstats
import time
from pathlib import Path
from typing import Any

from results_file import write_results

from models.datasets import load_dataset
from models.online.baselines import ItemKNNBaseline, OnlineRanker, PopularityBaseline
from models.online.recommender import OnlineRecommender


def _measure(model: OnlineRanker, events: list, warm: int, measure: int) -> dict[str, float]:
    for event in events[:warm]:
        model.learn_one(event)
    window = events[warm : warm + measure]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for event in window:
        model.rank(event.user_id, 10, event.timestamp_ms)
        model.learn_one(event)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "events": len(window),
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
        "events_per_s_cpu": round(len(window) / cpu, 1),
        "events_per_s_wall": round(len(window) / wall, 1),
        "us_per_event_cpu": round(1e6 * cpu / len(window), 1),
    }


def _profile(model: OnlineRecommender, events: list, top: int = 15) -> list[dict[str, Any]]:
    profiler = cProfile.Profile()
    profiler.enable()
    for event in events:
        model.rank(event.user_id, 10, event.timestamp_ms)
        model.learn_one(event)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
    rows = []
    for (path, line, name), (_, ncalls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        short = path.split("site-packages/")[-1].split("/work/main/")[-1]
        rows.append(
            {
                "function": f"{short}:{line}({name})",
                "calls": ncalls,
                "self_share": round(tottime / total, 3),
                "cumulative_share": round(cumtime / total, 3),
            }
        )
    rows.sort(key=lambda r: -r["self_share"])
    return rows[:top]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="movielens100k")
    parser.add_argument("--warm", type=int, default=30_000)
    parser.add_argument("--measure", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/online_speed.json"))
    args = parser.parse_args()
    ds = load_dataset(args.dataset)
    events = ds.events
    variants: dict[str, Any] = {
        "streamrec": lambda: OnlineRecommender(catalog=ds.items),
        "streamrec_with_usercf": lambda: OnlineRecommender(catalog=ds.items, user_cf=True),
        "streamrec_fixed_blend": lambda: OnlineRecommender(catalog=ds.items, reranker=None),
        "baseline_popularity": PopularityBaseline,
        "baseline_itemknn_window20": lambda: ItemKNNBaseline(recent=20, pair_window=20),
    }
    results = {}
    for name, factory in variants.items():
        results[name] = _measure(factory(), events, args.warm, args.measure)
        print(name, results[name])
    model = OnlineRecommender(catalog=ds.items)
    for event in events[: args.warm]:
        model.learn_one(event)
    profile = _profile(model, events[args.warm : args.warm + min(args.measure, 5_000)])
    output = {
        "dataset": ds.name,
        "n_items": ds.n_items,
        "protocol": {
            "warm_events": args.warm,
            "measured_events": args.measure,
            "per_event": "rank(user, 10) + learn_one(event), one thread",
            "headline": "events_per_s_cpu (process CPU time, one core)",
        },
        "machine": {"python": platform.python_version(), "processor": platform.processor()},
        "models": results,
        "memory": {
            "similarity_pairs": model.similarity.n_pairs,
            "similarity_bytes_estimate": model.similarity.rows.nbytes(),
            "pair_bound": len(model.vocab) * model.max_neighbors,
        },
        "profile_top": profile,
    }
    write_results(args.out, output)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
