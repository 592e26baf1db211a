"""``/metrics`` in Prometheus' text format: the counters, the freshness histogram, online
HitRate@10 and MRR@10, the consumer lag and each partition's ranker, rendered from one telemetry
snapshot read per scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stream_app.cache.keys import STAT_NAMES
from stream_app.cache.telemetry import (
    FRESHNESS_BUCKETS_MS,
    RankerStats,
    TelemetrySnapshot,
    bucket_field,
    cumulative,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, eq=False)  # hashed by identity by the registry
class _SnapshotCollector:
    """A one-shot prometheus_client collector over a snapshot read for this scrape."""

    snapshot: TelemetrySnapshot | None
    lag: Mapping[str, int] | None = None
    group: str = ""
    rankers: Sequence[RankerStats] = ()

    def collect(self) -> Any:
        yield from _health_families(self.snapshot is not None, self.lag, self.group)
        snap = self.snapshot
        if snap is None:
            return
        yield from _counter_families(snap)
        yield from _rate_families(snap)
        if self.rankers:
            yield from _ranker_families(self.rankers)
        yield from _freshness_families(snap)
        yield from _worker_families(snap)


def _health_families(redis_up: bool, lag: Mapping[str, int] | None, group: str) -> Any:
    """Whether Redis answered, and the worker group's lag per topic."""
    from prometheus_client.core import GaugeMetricFamily

    up = GaugeMetricFamily("streamrec_redis_up", "1 if the API could read Redis")
    up.add_metric([], 1.0 if redis_up else 0.0)
    yield up
    if lag:
        family = GaugeMetricFamily(
            "streamrec_consumer_lag",
            "Messages of the topic the worker group has not committed yet (from Kafka)",
            labels=["group", "topic"],
        )
        for topic, value in lag.items():
            family.add_metric([group, topic], float(value))
        yield family


def _counter_families(snap: TelemetrySnapshot) -> Any:
    """The workers' counters and the online trials behind the rates."""
    from prometheus_client.core import CounterMetricFamily

    for name in STAT_NAMES:
        yield CounterMetricFamily(
            f"streamrec_{name}", f"Worker counter stats:{name}", value=snap.stats.get(name, 0)
        )
    # Two online HitRate@10 forms (stream_app.worker.telemetry): "sequential" (sampled events,
    # each against the list cached right before it) is the headline, comparable with the
    # offline prequential figure; "cached" (every event against the list cached before its
    # micro-batch) is what users literally saw. With no trials yet a rate reads 0.
    # MRR@10 stands beside each form over the same trials (rr: sum of 1/rank in the top 10).
    counters = (
        ("seq_hits", "Sampled events whose item was in the top-10 cached right before it"),
        ("seq_trials", "Sampled events judged for the sequential online HitRate@10"),
        ("seq_rr", "Sum over the sequential trials of 1/rank in the top-10 (0 if absent)"),
        ("hits", "Events whose item was in the top-10 cached before their batch"),
        ("trials", "Events judged for the cached online HitRate@10"),
        ("rr", "Sum over the cached trials of 1/rank in the top-10 (0 if absent)"),
    )
    for name, help_text in counters:
        yield CounterMetricFamily(f"streamrec_online_{name}", help_text, value=getattr(snap, name))


def _rate_families(snap: TelemetrySnapshot) -> Any:
    """Online HitRate@10 and MRR@10, sequential and cached; 0 with no trials yet."""
    from prometheus_client.core import GaugeMetricFamily

    rates = (
        (
            "hit_rate_at_10",
            snap.hit_rate_at_10,
            "seq_hits / seq_trials, comparable with offline prequential",
        ),
        (
            "hit_rate_at_10_cached",
            snap.hit_rate_at_10_cached,
            "hits / trials, lists cached before the batch",
        ),
        (
            "mrr_at_10",
            snap.mrr_at_10,
            "seq_rr / seq_trials, comparable with offline prequential MRR@10",
        ),
        (
            "mrr_at_10_cached",
            snap.mrr_at_10_cached,
            "rr / trials, lists cached before the batch",
        ),
    )
    for name, value, help_text in rates:
        rate = GaugeMetricFamily(f"streamrec_online_{name}", help_text)
        rate.add_metric([], value if value is not None else 0.0)
        yield rate


def _freshness_families(snap: TelemetrySnapshot) -> Any:
    """The freshness histogram and its p50/p99 estimates."""
    from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

    running = cumulative(snap.freshness_counts)
    buckets = [(bucket_field(i), float(running[i])) for i in range(len(FRESHNESS_BUCKETS_MS) + 1)]
    yield HistogramMetricFamily(
        "streamrec_freshness_ms",
        "Event Kafka timestamp to its user's recommendations written, ms",
        buckets=buckets,
        sum_value=snap.freshness_sum_ms,
    )
    for q, label in ((0.5, "p50"), (0.99, "p99")):
        gauge = GaugeMetricFamily(
            f"streamrec_freshness_{label}_ms", f"Freshness {label} estimated from the buckets"
        )
        value = snap.freshness_quantile(q)
        gauge.add_metric([], value if value is not None else float("nan"))
        yield gauge


def _worker_families(snap: TelemetrySnapshot) -> Any:
    """The live workers and the model versions they serve."""
    from prometheus_client.core import GaugeMetricFamily

    workers = GaugeMetricFamily("streamrec_workers", "Workers that reported in the last 60 s")
    workers.add_metric([], float(len(snap.workers)))
    yield workers
    versions = GaugeMetricFamily(
        "streamrec_model_version",
        "1 per model version a live worker serves",
        labels=["model", "version"],
    )
    for model, served in snap.model_versions.items():
        for version in served:
            versions.add_metric([model, version], 1.0)
    yield versions


#: Per-partition ranker series: (kind, name after ``streamrec_ranker_``, ``RankerStats`` field,
#: help). Counters get Prometheus' ``_total`` suffix.
RANKER_METRICS: tuple[tuple[str, str, str, str], ...] = (
    ("counter", "updates", "updates", "Events the partition's ranker learned"),
    ("counter", "pairs", "pairs", "Training pairs the partition's ranker learned"),
    (
        "gauge",
        "pairwise_accuracy",
        "pairwise_accuracy",
        "Share of pairs the ranker ordered right before learning their batch (online)",
    ),
    (
        "gauge",
        "log_loss",
        "mean_log_loss",
        "Mean logistic loss per pair, scored before learning its batch (online, nats)",
    ),
    (
        "gauge",
        "learn_cpu_seconds_per_update",
        "learn_s_per_update",
        "Worker thread CPU seconds of the ranker's own learning, per update",
    ),
    (
        "counter",
        "learn_cpu_seconds",
        "learn_s",
        "Worker thread CPU seconds of the ranker's own learning",
    ),
)


def _ranker_families(rankers: Sequence[RankerStats]) -> Any:
    """One sample per partition and family; a ratio with no denominator yet has no sample."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    for kind, name, attr, help_text in RANKER_METRICS:
        cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        family = cls(f"streamrec_ranker_{name}", help_text, labels=["partition"])
        for ranker in rankers:
            value = getattr(ranker, attr)
            if value is not None:
                family.add_metric([str(ranker.partition)], float(value))
        yield family


def render_metrics(
    snapshot: TelemetrySnapshot | None,
    lag: Mapping[str, int] | None = None,
    group: str = "",
    rankers: Sequence[RankerStats] = (),
) -> bytes:
    """Prometheus text exposition (format 0.0.4) of a snapshot; ``None`` means Redis is down.
    ``lag``: topic -> the worker group's (``group``) consumer lag, from :class:`LagProbe`;
    ``rankers``: the partitions' ranker counters (``ReadStore.ranker_states``).

    >>> from stream_app.cache.telemetry import TelemetrySnapshot
    >>> snap = TelemetrySnapshot(stats={"events": 7}, hits=1, trials=4, seq_hits=1, seq_trials=2)
    >>> lines = render_metrics(snap).decode().splitlines()
    >>> "streamrec_events_total 7.0" in lines, "streamrec_online_hit_rate_at_10 0.5" in lines
    (True, True)
    >>> "streamrec_online_hit_rate_at_10_cached 0.25" in lines
    True
    >>> r = RankerStats(2, updates=10, pairs=40, pairs_correct=30, loss_sum=20.0, learn_s=0.01)
    >>> 'streamrec_ranker_pairwise_accuracy{partition="2"} 0.75' in render_metrics(
    ...     snap, rankers=[r]).decode().splitlines()
    True
    >>> render_metrics(None).decode().splitlines()[-1]
    'streamrec_redis_up 0.0'
    >>> 'streamrec_consumer_lag{group="g",topic="events"} 5.0' in render_metrics(
    ...     None, {"events": 5}, "g").decode().splitlines()
    True
    """
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot, lag, group, rankers))  # type: ignore[arg-type]
    return generate_latest(registry)
