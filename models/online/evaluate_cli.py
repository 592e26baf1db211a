"""``streamrec evaluate``: prequential comparison of the served model with the baselines.

``streamrec`` is :class:`models.online.stream.StreamModel`, the model the worker runs (the
same scoring and learning functions, one event at a time). ``dense_reference`` is the earlier
offline-only model (:class:`OnlineRecommender`: dense features over the whole catalog, content
and session-boundary features), kept beside it to show what the stream form gives up.

Writes ``--out FILE`` as JSON (``dataset``, ``protocol``, ``models``) and a PNG of HitRate@10
over the stream next to it. Protocol: :mod:`models.evaluation.prequential`. How events count
(weights, negatives) comes from the caller, the settings the worker reads too
(``stream_app/cli/evaluate.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from models.datasets import load_dataset
from models.datasets.base import EventDataset
from models.evaluation.prequential import plot_curves, prequential
from models.events import DEFAULT_FEEDBACK, Feedback, Interaction
from models.online.baselines import ItemKNNBaseline, OnlineRanker, baseline_models
from models.online.oracle import PlantedOracle
from models.online.recommender import OnlineRecommender
from models.online.stream import StreamModel
from models.online.stream.scoring import ScoringParams

log = logging.getLogger(__name__)

#: Extra variants beside ``streamrec`` (``--variants``): the served model without its ranker,
#: and the dense offline model with its ablations (docs/online-models.md).
#: Each is built from (catalog, seed, feedback); the dense ones never see a negative event.
VARIANTS: dict[str, Callable[[EventDataset, int, Feedback], OnlineRanker]] = {
    "streamrec_fixed_blend": lambda data, seed, feedback: StreamModel(
        min_trained=2**62, feedback=feedback, catalog=data.catalog
    ),
    "streamrec_no_content": lambda data, seed, feedback: StreamModel(feedback=feedback),
    "streamrec_cold_slot": lambda data, seed, feedback: StreamModel(
        feedback=feedback, catalog=data.catalog, params=ScoringParams(cold_slot=4)
    ),
    "streamrec_cold_slot_at_launch": lambda data, seed, feedback: CatalogAtLaunch(
        StreamModel(feedback=feedback, params=ScoringParams(cold_slot=4)), data
    ),
    "streamrec_catalog_at_launch": lambda data, seed, feedback: CatalogAtLaunch(
        StreamModel(feedback=feedback), data
    ),
    "dense_reference": lambda data, seed, _: OnlineRecommender(catalog=data.items, seed=seed),
    "dense_fixed_blend": lambda data, seed, _: OnlineRecommender(
        catalog=data.items, seed=seed, reranker=None
    ),
    "dense_fm": lambda data, seed, _: OnlineRecommender(
        catalog=data.items, seed=seed, reranker="fm"
    ),
    "dense_with_usercf": lambda data, seed, _: OnlineRecommender(
        catalog=data.items, seed=seed, user_cf=True
    ),
}


class CatalogAtLaunch:
    """``model`` with each item's record published the moment before its first event, as a
    shop publishes an item when it launches, instead of the whole catalog before the stream:
    what the cold pool is for (docs/stream.md, "Content and cold items"). Items are
    published in stream time; one that no event names is never published."""

    reads_feedback = True

    def __init__(self, model: StreamModel, data: EventDataset) -> None:
        self.model = model
        first: dict[str, int] = {}
        for event in data.events:
            first.setdefault(event.item_id, event.timestamp_ms)
        launches = [(first[r.item_id] - 1, r) for r in data.catalog if r.item_id in first]
        self._queue = sorted(launches, key=lambda launch: launch[0], reverse=True)

    def _launch_until(self, now_ms: int | None) -> None:
        queue, content = self._queue, self.model.scorer.content
        while queue and (now_ms is None or queue[-1][0] <= now_ms):
            _, record = queue.pop()
            content.apply(record.item_id, record)

    def learn_one(self, event: Interaction) -> None:
        self._launch_until(event.timestamp_ms)
        self.model.learn_one(event)

    def rank(self, user_id: str, k: int = 10, now_ms: int | None = None) -> list[str]:
        self._launch_until(now_ms)
        return self.model.rank(user_id, k, now_ms)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        default="movielens100k",
        help="movielens100k, movielens100k-positive, synthetic, ecommerce or a file",
    )
    parser.add_argument("--out", type=Path, help="JSON results file (a .png plot goes next to it)")
    parser.add_argument("--limit", type=int, help="only the first N events of the stream")
    parser.add_argument("--synthetic-events", type=int, help="size of the synthetic stream")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--warmup", type=float, default=0.1)
    parser.add_argument(
        "--variants",
        default="streamrec_fixed_blend,streamrec_no_content,streamrec_catalog_at_launch,"
        "dense_reference",
        help=f"comma list of extra model variants ('' for none): {', '.join(VARIANTS)}",
    )
    parser.add_argument("--no-baselines", action="store_true", help="only our model(s)")
    _system_arguments(parser)
    parser.add_argument(
        "--no-oracle", action="store_true", help="skip the planted-truth reference (synthetic)"
    )


def _system_arguments(parser: argparse.ArgumentParser) -> None:
    from models.session.train_cli import parse_duration

    system = parser.add_argument_group("system replay (--system: models/online/system_cli.py)")
    system.add_argument(
        "--system",
        action="store_true",
        help="replay the whole system: the online model, a session model retrained in stream "
        "time and swapped through the worker's gate, the worker's blend",
    )
    system.add_argument("--retrain-every", type=parse_duration, default=parse_duration("14d"))
    system.add_argument(
        "--window", type=parse_duration, default=parse_duration("30d"), help="sliding window"
    )
    system.add_argument("--min-window-events", type=int, default=2000)
    system.add_argument("--min-updates", type=int, default=600, help="GRU updates per retrain")
    system.add_argument("--no-gru", action="store_true", help="the baselines' blend alone")
    system.add_argument(
        "--session-slots", default="1,2,3,5", help="blend variants ranked (places in a list)"
    )
    system.add_argument(
        "--tune-fraction",
        type=float,
        default=0.0,
        help="choose the blend on the trials of this first part; metrics count only the rest",
    )
    system.add_argument(
        "--session-gap-s",
        type=float,
        default=1800.0,
        help="the session component's inactivity gap (STREAMREC_SESSION_GAP_S's default)",
    )


def build_models(
    data: EventDataset,
    variants: list[str],
    baselines: bool = True,
    seed: int = 0,
    feedback: Feedback = DEFAULT_FEEDBACK,
    params: ScoringParams | None = None,
) -> dict[str, OnlineRanker]:
    """``streamrec`` (with the dataset's catalog, as the worker has it after `streamrec
    produce --items`, and the worker's ``params``), the ``variants`` and the baselines."""
    models: dict[str, OnlineRanker] = {
        "streamrec": StreamModel(feedback=feedback, catalog=data.catalog, params=params)
    }
    for name in variants:
        if name not in VARIANTS:
            raise SystemExit(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
        models[name] = VARIANTS[name](data, seed, feedback)
    if baselines:
        models.update(baseline_models())
        # The windowed co-occurrence is the stronger item-kNN on MovieLens; both are baselines.
        models["itemknn_window20"] = ItemKNNBaseline(recent=20, pair_window=20)
    return models


def _relative(ours: float, best: float) -> float:
    return (ours / best - 1.0) if best > 0 else math.inf


def _references(
    results: dict[str, Any], references: list[str], dataset: EventDataset, k: int
) -> dict[str, Any]:
    """What each reference (the planted-truth oracle) is, and how far above Markov it is."""
    markov = results.get("markov")
    return {
        name: {
            "what": "planted-truth oracle: reads the generator's hidden world; a ceiling, "
            "not a baseline and not a competitor",
            "generator_resumes_chain": bool(getattr(dataset.planted, "resume_chain", False)),
            "relative_to_markov": {
                metric: _relative(results[name][metric], markov[metric])
                for metric in (f"hit_rate@{k}", f"mrr@{k}")
            }
            if markov is not None
            else None,
        }
        for name in references
    }


def run(
    args: argparse.Namespace,
    feedback: Feedback = DEFAULT_FEEDBACK,
    params: ScoringParams | None = None,
) -> int:
    """Evaluate, counting events as ``feedback`` says and scoring with ``params`` (the
    worker's settings); ``--system`` replays the whole system instead."""
    if args.system:
        from models.online import system_cli

        return system_cli.run(args, feedback, params, gap_s=args.session_gap_s)
    dataset = load_dataset(args.dataset, synthetic_events=args.synthetic_events, seed=args.seed)
    events = dataset.events[: args.limit] if args.limit else dataset.events
    variants = [v for v in args.variants.split(",") if v]
    models = build_models(
        dataset, variants, not args.no_baselines, args.seed, feedback=feedback, params=params
    )
    references: list[str] = []
    if dataset.planted is not None and not args.no_oracle:
        # Reads the generator's hidden world: a ceiling for reading the gaps, never compared as
        # a baseline (see models/online/oracle.py).
        models["oracle"] = PlantedOracle(dataset.planted)
        references.append("oracle")
    started = time.perf_counter()
    result = prequential(
        events,
        models,
        k=args.k,
        warmup=args.warmup,
        feedback=feedback,
        tune_fraction=args.tune_fraction,
    )
    k = args.k
    baselines = [
        n
        for n in result["models"]
        if not n.startswith(("streamrec", "dense_")) and n not in references
    ]
    comparison: dict[str, Any] = {}
    if baselines:
        ours = result["models"]["streamrec"]
        for metric in (f"hit_rate@{k}", f"mrr@{k}"):
            best = max(baselines, key=lambda n: result["models"][n][metric])
            comparison[metric] = {
                "best_baseline": best,
                "baseline": result["models"][best][metric],
                "streamrec": ours[metric],
                "relative_gain": _relative(ours[metric], result["models"][best][metric]),
            }
    output = {
        "dataset": dataset.name if args.dataset in ("movielens100k", "synthetic") else args.dataset,
        "protocol": {
            **result["protocol"],
            "limit": args.limit,
            "seed": args.seed,
            "wall_s": round(time.perf_counter() - started, 1),
            "event_weights": dict(feedback.weights),
            "negative_rating_below": feedback.negative_rating_below,
            "cold_slot": None if params is None else params.cold_slot,
        },
        "models": result["models"],
        "comparison": comparison,
    }
    if references:
        output["references"] = _references(result["models"], references, dataset, k)
    for name, res in result["models"].items():
        print(
            f"{name:24s} HR@{k} {res[f'hit_rate@{k}']:.4f}  MRR@{k} {res[f'mrr@{k}']:.4f}  "
            f"cov {res[f'coverage@{k}']:.3f}  {res['events_per_s']:8.0f} ev/s"
        )
    for metric, row in comparison.items():
        print(f"{metric}: streamrec vs {row['best_baseline']}: {row['relative_gain']:+.1%}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(output, indent=2) + "\n")
        plot_curves(output, str(args.out.with_suffix(".png")), title=f"{output['dataset']}")
        print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0
