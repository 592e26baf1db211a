"""Prequential ("test, then train") evaluation of online rankers over one event stream.

One protocol, written down once, that the evaluator, the CLI and the benchmarks share: events
replayed in stream order; after a warm-up that only trains, each model ranks the user's top-``k``
before it learns each event (with ``tune_fraction``, the trials before it are reported apart,
as ``tune_*``, to choose settings on, and the metrics count only the rest); an item the user
already had is not scored (``repeats``); cost is thread CPU time of ``rank`` + ``learn_one``.
The rules in full (candidates, ties, coverage, what is and is not scored, negative feedback,
timing): docs/online-models.md, "Prequential evaluation".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from models.evaluation.metrics import RankAccumulator, rank_in_list
from models.events import DEFAULT_FEEDBACK, Feedback, Interaction
from models.online.baselines import OnlineRanker


@dataclass(slots=True)
class ModelTrace:
    """Everything measured for one model during a replay."""

    acc: RankAccumulator = field(default_factory=lambda: RankAccumulator(cutoffs=(10,)))
    #: the trials whose item had no event before (cold-start items: what content can reach)
    first_acc: RankAccumulator = field(default_factory=lambda: RankAccumulator(cutoffs=(10,)))
    #: the trials of the tuning part (before ``tune_fraction``), kept out of the metrics
    tune_acc: RankAccumulator = field(default_factory=lambda: RankAccumulator(cutoffs=(10,)))
    recommended: set[str] = field(default_factory=set)
    rank_s: float = 0.0
    learn_s: float = 0.0
    wall_s: float = 0.0
    bucket_hits: list[int] = field(default_factory=list)


def _test_then_train(
    model: OnlineRanker,
    trace: ModelTrace,
    event: Interaction,
    k: int,
    first: bool,
    tuning: bool = False,
) -> None:
    """One scored event: the model ranks the user's top-``k``, then learns the event; both
    timed (thread CPU and wall), the target's rank recorded (also apart when ``first``: the
    item's first event in the stream; only apart, in ``tune_acc``, when ``tuning``)."""
    clock, wall = time.thread_time, time.perf_counter
    w0, t0 = wall(), clock()
    ranked = model.rank(event.user_id, k, event.timestamp_ms)
    t1 = clock()
    model.learn_one(event)
    t2 = clock()
    trace.wall_s += wall() - w0
    trace.rank_s += t1 - t0
    trace.learn_s += t2 - t1
    rank = rank_in_list(event.item_id, ranked[:k])
    if tuning:
        trace.tune_acc.add(rank)
        return
    trace.acc.add(rank)
    if first:
        trace.first_acc.add(rank)
    trace.recommended.update(ranked[:k])
    if rank is not None:
        trace.bucket_hits[-1] += 1


def _model_results(
    trace: ModelTrace, k: int, scored: int, distinct_items: int, bucket_size: int
) -> dict[str, Any]:
    """One model's metrics, coverage, cost and HitRate curve."""
    summary = trace.acc.summary()
    first = trace.first_acc.summary()
    cost = trace.rank_s + trace.learn_s
    tuned = trace.tune_acc.summary() if trace.tune_acc.count else {}
    return {
        **{f"tune_{name}": tuned[name] for name in (f"hit_rate@{k}", f"mrr@{k}") if tuned},
        f"first_event_hit_rate@{k}": first.get(f"hit_rate@{k}", 0.0),
        f"first_event_mrr@{k}": first.get(f"mrr@{k}", 0.0),
        f"hit_rate@{k}": summary.get(f"hit_rate@{k}", 0.0),
        f"mrr@{k}": summary.get(f"mrr@{k}", 0.0),
        f"ndcg@{k}": summary.get(f"ndcg@{k}", 0.0),
        f"coverage@{k}": len(trace.recommended) / max(distinct_items, 1),
        "events_per_s": scored / cost if cost > 0 else 0.0,
        "events_per_s_wall": scored / trace.wall_s if trace.wall_s > 0 else 0.0,
        "rank_us": 1e6 * trace.rank_s / max(scored, 1),
        "learn_us": 1e6 * trace.learn_s / max(scored, 1),
        "hit_rate_curve": [h / bucket_size for h in trace.bucket_hits],
    }


def _next_in_bucket(traces: Iterable[ModelTrace], fill: int, size: int) -> int:
    """A reported trial's place in its curve bucket; the first of a bucket opens it."""
    if fill == 0:
        for trace in traces:
            trace.bucket_hits.append(0)
    return (fill + 1) % size


def prequential(
    events: Sequence[Interaction],
    models: Mapping[str, OnlineRanker],
    *,
    k: int = 10,
    warmup: float = 0.1,
    n_buckets: int = 50,
    progress: Callable[[int], None] | None = None,
    feedback: Feedback = DEFAULT_FEEDBACK,
    tune_fraction: float = 0.0,
) -> dict[str, Any]:
    """Replay ``events`` through every model; return the protocol and per-model results; the
    trials of the first ``tune_fraction`` count only in ``tune_hit_rate@k``, ``tune_mrr@k``.

    A negative event (``feedback.is_negative``: a dislike, a skip, a low rating) is never a
    trial, and later events of its user on its item are not either (she said no to it, as a
    repeat she had it). It reaches only the models that read feedback (``reads_feedback``:
    the stream model, which excludes the item); the others never learn it as a positive.

    >>> from models.online.baselines import PopularityBaseline
    >>> ev = [Interaction(u, i, "view", 1_700_000_000_000 + n)
    ...       for n, (u, i) in enumerate([("a", "x"), ("b", "x"), ("c", "y"), ("c", "x")])]
    >>> out = prequential(ev, {"pop": PopularityBaseline()}, warmup=0.5)
    >>> out["models"]["pop"]["hit_rate@10"], out["protocol"]["scored_events"]
    (0.5, 2)
    """
    n_warm = int(len(events) * warmup)
    n_tune = int(len(events) * tune_fraction)
    traces = {name: ModelTrace() for name in models}
    user_items: dict[str, set[str]] = {}
    stream_items: set[str] = set()
    scored = repeats = negatives = first_scored = tuned = 0
    readers = {name for name, model in models.items() if getattr(model, "reads_feedback", False)}
    is_negative = feedback.is_negative
    tick = progress or (lambda _: None)
    bucket_size = max(1, (len(events) - max(n_warm, n_tune)) // max(n_buckets, 1))
    bucket_fill = 0
    for n, event in enumerate(events):
        first = event.item_id not in stream_items
        stream_items.add(event.item_id)
        own = user_items.setdefault(event.user_id, set())
        if is_negative(event):
            negatives += 1
            for name in readers:
                models[name].learn_one(event)
            own.add(event.item_id)
            tick(n)
            continue
        score_it = n >= n_warm and event.item_id not in own
        if n >= n_warm and not score_it:
            repeats += 1
        tuning = score_it and n < n_tune
        tuned += tuning
        if score_it and not tuning:
            scored += 1
            first_scored += first
            bucket_fill = _next_in_bucket(traces.values(), bucket_fill, bucket_size)
        for name, model in models.items():
            if score_it:
                _test_then_train(model, traces[name], event, k, first, tuning)
            else:
                model.learn_one(event)
        own.add(event.item_id)
        tick(n)
    results = {
        name: _model_results(trace, k, scored, len(stream_items), bucket_size)
        for name, trace in traces.items()
    }
    counts = {
        "scored_events": scored,
        "tune_fraction": tune_fraction,
        "tune_events_scored": tuned,
        "first_events_scored": first_scored,
        "repeats_not_scored": repeats,
        "negative_events_not_scored": negatives,
        "distinct_items": len(stream_items),
    }
    protocol = _protocol(k, warmup, len(events), n_warm, counts, bucket_size)
    return {"protocol": protocol, "models": results}


def _protocol(
    k: int, warmup: float, events: int, n_warm: int, counts: dict[str, int], bucket_size: int
) -> dict[str, Any]:
    """The replay's rules and counts, as the results file states them."""
    return {
        "k": k,
        "warmup_fraction": warmup,
        "events": events,
        "warmup_events": n_warm,
        **counts,
        "order": "timestamp, user, item",
        "candidates": "items seen so far minus the user's own; ties by popularity",
        "curve_bucket_events": bucket_size,
    }


def plot_curves(result: Mapping[str, Any], path: str, title: str = "") -> None:
    """PNG of HitRate@k per bucket of scored events, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = result["protocol"]["k"]
    bucket = result["protocol"]["curve_bucket_events"]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for name, res in result["models"].items():
        curve = res["hit_rate_curve"]
        ax.plot([bucket * (n + 1) for n in range(len(curve))], curve, label=name)
    ax.set_xlabel("scored events")
    ax.set_ylabel(f"HitRate@{k} per {bucket} events")
    ax.set_title(title or "prequential HitRate")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
