"""The telemetry's Redis schema and its readers: key names, the freshness buckets and their
quantiles, the snapshot the API and ``streamrec watch`` read in one round trip, and the rankers'
counters parsed from their checkpoints without River (so a reader never loads a model).

The worker writes these records (``stream_app.worker.telemetry``); docs/stream.md,
"Telemetry", says how each number is counted.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stream_app.cache.keys import CacheKeys

log = logging.getLogger(__name__)


#: Upper bounds (ms) of the freshness buckets; a final ``+Inf`` bucket is implied.
FRESHNESS_BUCKETS_MS: tuple[float, ...] = (5, 10, 25, 50, 100, 200, 500, 1000, 2000, 5000)


HIT_K = 10


#: How long a worker's "I serve these versions" entry outlives its last report.
WORKER_TTL_S = 60

#: How often an idle worker reports that it is alive (well inside ``WORKER_TTL_S``).
WORKER_HEARTBEAT_S = 10.0


def bucket_index(value: float, bounds: Sequence[float] = FRESHNESS_BUCKETS_MS) -> int:
    """Index of the bucket ``value`` falls in: the first bound ``>= value``; ``len(bounds)`` is
    the ``+Inf`` bucket. Negative values (clock skew between producer and worker) count in the
    first bucket rather than being dropped.

    >>> bucket_index(5), bucket_index(5.1), bucket_index(-3), bucket_index(9999)
    (0, 1, 0, 10)
    """
    return bisect.bisect_left(bounds, value)


def bucket_counts(
    values: Iterable[float], bounds: Sequence[float] = FRESHNESS_BUCKETS_MS
) -> list[int]:
    """Non-cumulative counts per bucket, ``len(bounds) + 1`` long (the last is ``+Inf``).

    >>> bucket_counts([1, 5, 7, 30, 10_000], bounds=(5, 10, 50))
    [2, 1, 1, 1]
    """
    counts = [0] * (len(bounds) + 1)
    for value in values:
        counts[bucket_index(value, bounds)] += 1
    return counts


def cumulative(counts: Sequence[int]) -> list[int]:
    """Running totals (Prometheus buckets are cumulative).

    >>> cumulative([2, 1, 0, 1])
    [2, 3, 3, 4]
    """
    out: list[int] = []
    total = 0
    for count in counts:
        total += count
        out.append(total)
    return out


def quantile_from_buckets(
    counts: Sequence[int], q: float, bounds: Sequence[float] = FRESHNESS_BUCKETS_MS
) -> float | None:
    """Estimate the ``q`` quantile from non-cumulative bucket counts, as Prometheus'
    ``histogram_quantile`` does: find the bucket holding rank ``q * total`` and interpolate
    linearly inside it (the first bucket's lower edge is 0). A rank in the ``+Inf`` bucket returns
    the largest finite bound, the most the histogram can say. ``None`` when empty.

    >>> quantile_from_buckets([0, 4, 4, 0], 0.5, bounds=(10, 20, 40))   # rank 4 of 8: top of b1
    20.0
    >>> quantile_from_buckets([0, 4, 4, 0], 0.75, bounds=(10, 20, 40))  # rank 6: half into b2
    30.0
    >>> quantile_from_buckets([1, 0, 0, 9], 0.99, bounds=(10, 20, 40))
    40.0
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError("q must be in [0, 1]")
    if len(counts) != len(bounds) + 1:
        raise ValueError("need one count per bound plus the +Inf bucket")
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    running = 0
    for i, count in enumerate(counts):
        if running + count >= rank and count > 0:
            if i == len(bounds):
                return float(bounds[-1])
            lower = 0.0 if i == 0 else float(bounds[i - 1])
            upper = float(bounds[i])
            return lower + (upper - lower) * (rank - running) / count
        running += count
    return float(bounds[-1])  # pragma: no cover - unreachable: rank <= total


def hit_rate(hits: int, trials: int) -> float | None:
    """``hits / trials``, or None before the first trial.

    >>> hit_rate(3, 12), hit_rate(0, 0)
    (0.25, None)
    """
    return hits / trials if trials else None


def mean_reciprocal_rank(rr: float, trials: int) -> float | None:
    """MRR: the reciprocal-rank sum ``rr`` over ``trials``, or None before the first trial.

    >>> mean_reciprocal_rank(1.5, 6), mean_reciprocal_rank(0.0, 0)
    (0.25, None)
    """
    return rr / trials if trials else None


@dataclass(frozen=True, slots=True)
class TelemetrySnapshot:
    """Everything the API exposes, read in one round trip (see :func:`read_snapshot`)."""

    events: int = 0
    dlq: int = 0
    stats: Mapping[str, int] = field(default_factory=dict)
    hits: int = 0
    trials: int = 0
    rr: float = 0.0
    seq_hits: int = 0
    seq_trials: int = 0
    seq_rr: float = 0.0
    freshness_counts: tuple[int, ...] = (0,) * (len(FRESHNESS_BUCKETS_MS) + 1)
    freshness_sum_ms: float = 0.0
    workers: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    #: worker id -> epoch ms of its last report (a batch or a heartbeat)
    workers_seen_ms: Mapping[str, int] = field(default_factory=dict)

    @property
    def newest_report_ms(self) -> int | None:
        """When a worker last reported; None when none is registered."""
        return max(self.workers_seen_ms.values(), default=None)

    @property
    def hit_rate_at_10(self) -> float | None:
        """Sequential (sampled) online HitRate@10: the one comparable with offline prequential."""
        return hit_rate(self.seq_hits, self.seq_trials)

    @property
    def hit_rate_at_10_cached(self) -> float | None:
        """Every event against the list cached before its batch: what users literally saw."""
        return hit_rate(self.hits, self.trials)

    @property
    def mrr_at_10(self) -> float | None:
        """Sequential online MRR@10, over the trials of :attr:`hit_rate_at_10`."""
        return mean_reciprocal_rank(self.seq_rr, self.seq_trials)

    @property
    def mrr_at_10_cached(self) -> float | None:
        """Cached online MRR@10, over the trials of :attr:`hit_rate_at_10_cached`."""
        return mean_reciprocal_rank(self.rr, self.trials)

    def freshness_quantile(self, q: float) -> float | None:
        return quantile_from_buckets(self.freshness_counts, q)

    @property
    def model_versions(self) -> dict[str, list[str]]:
        """Model name -> the distinct versions the live workers serve (two during a rollout)."""
        out: dict[str, set[str]] = {}
        for versions in self.workers.values():
            for name, version in versions.items():
                out.setdefault(name, set()).add(version)
        return {name: sorted(v) for name, v in sorted(out.items())}


@dataclass(frozen=True, slots=True)
class TelemetryKeys:
    """Key names of the telemetry, under the same version prefix as ``CacheKeys``.

    >>> TelemetryKeys(CacheKeys("streamrec:v1")).worker("w1")
    'streamrec:v1:telemetry:worker:w1'
    """

    cache_keys: CacheKeys = field(default_factory=CacheKeys)

    @property
    def hitrate(self) -> str:
        return f"{self.cache_keys.shared_prefix}:telemetry:hitrate"

    @property
    def freshness(self) -> str:
        return f"{self.cache_keys.shared_prefix}:telemetry:freshness"

    def worker(self, worker_id: str) -> str:
        return f"{self.cache_keys.shared_prefix}:telemetry:worker:{worker_id}"

    @property
    def workers(self) -> str:
        """Sorted set: worker id -> epoch ms of its last batch."""
        return f"{self.cache_keys.shared_prefix}:telemetry:workers"


def bucket_field(i: int, bounds: Sequence[float] = FRESHNESS_BUCKETS_MS) -> str:
    """The hash field of bucket ``i`` (its bound as Prometheus prints ``le``).

    >>> bucket_field(0), bucket_field(10)
    ('5', '+Inf')
    """
    if i == len(bounds):
        return "+Inf"
    bound = bounds[i]
    return str(int(bound)) if float(bound).is_integer() else repr(float(bound))


def _int(raw: Any) -> int:
    return int(float(raw)) if raw is not None else 0


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _float(raw: Any) -> float:
    """A float hash field; missing (a hash from before the field existed) or non-finite -> 0."""
    value = float(_text(raw)) if raw is not None else 0.0
    return value if math.isfinite(value) else 0.0


def parse_snapshot(
    stats: Mapping[str, int],
    hitrate: Mapping[Any, Any],
    freshness: Mapping[Any, Any],
    workers: Mapping[str, Mapping[Any, Any]],
    bounds: Sequence[float] = FRESHNESS_BUCKETS_MS,
) -> TelemetrySnapshot:
    """Raw Redis replies (bytes or str keys) to a snapshot; pure, so the API's parsing is tested
    without Redis. Unknown or malformed worker entries are skipped, not fatal.

    >>> s = parse_snapshot({"events": 9, "dlq": 1},
    ...                    {b"hits": b"3", b"trials": b"6", b"seq_hits": b"1", b"seq_trials": b"4",
    ...                     b"rr": b"1.5", b"seq_rr": b"0.5"},
    ...                    {b"5": b"2", b"+Inf": b"1", b"sum_ms": b"9000.5"},
    ...                    {"w1": {b"versions": b'{"session": "v2"}'}})
    >>> s.hit_rate_at_10, s.hit_rate_at_10_cached, s.freshness_counts[0], s.model_versions
    (0.25, 0.5, 2, {'session': ['v2']})
    >>> s.mrr_at_10, s.mrr_at_10_cached
    (0.125, 0.25)
    >>> parse_snapshot({}, {}, {}, {"w1": {"versions": "{}", "seen_at": "42"}}).newest_report_ms
    42
    """
    h = {_text(k): v for k, v in hitrate.items()}
    f = {_text(k): v for k, v in freshness.items()}
    counts = tuple(_int(f.get(bucket_field(i, bounds))) for i in range(len(bounds) + 1))
    parsed_workers: dict[str, dict[str, str]] = {}
    seen_ms: dict[str, int] = {}
    for worker_id, entry in workers.items():
        fields = {_text(k): v for k, v in entry.items()}
        try:
            versions = json.loads(_text(fields.get("versions", b"{}")))
            seen = _int(fields.get("seen_at"))
        except (ValueError, OverflowError):
            continue
        if isinstance(versions, dict):
            parsed_workers[worker_id] = {str(k): str(v) for k, v in versions.items()}
            seen_ms[worker_id] = seen
    return TelemetrySnapshot(
        events=int(stats.get("events", 0)),
        dlq=int(stats.get("dlq", 0)),
        stats=dict(stats),
        hits=_int(h.get("hits")),
        trials=_int(h.get("trials")),
        rr=_float(h.get("rr")),
        seq_hits=_int(h.get("seq_hits")),
        seq_trials=_int(h.get("seq_trials")),
        seq_rr=_float(h.get("seq_rr")),
        freshness_counts=counts,
        freshness_sum_ms=_float(f.get("sum_ms")),
        workers=parsed_workers,
        workers_seen_ms=seen_ms,
    )


@dataclass(frozen=True, slots=True)
class RankerStats:
    """The counters of one user-side partition's ranker state (``StreamRanker.to_json``).

    The pairs are scored before they are learned (test-then-train), so the accuracy and the
    loss are online figures. ``learn_s`` is the thread CPU of the ranker's own updates only.

    >>> r = RankerStats(0, updates=4, pairs=10, pairs_correct=7, loss_sum=5.0, learn_s=0.002)
    >>> r.pairwise_accuracy, r.mean_log_loss, r.learn_s_per_update
    (0.7, 0.5, 0.0005)
    """

    partition: int
    #: events learned (``n_learned``); each teaches a few pairs
    updates: int
    pairs: int
    pairs_correct: int
    loss_sum: float
    learn_s: float

    @property
    def pairwise_accuracy(self) -> float | None:
        return self.pairs_correct / self.pairs if self.pairs else None

    @property
    def mean_log_loss(self) -> float | None:
        """Mean logistic loss per pair, in nats."""
        return self.loss_sum / self.pairs if self.pairs else None

    @property
    def learn_s_per_update(self) -> float | None:
        return self.learn_s / self.updates if self.updates else None


def _count(data: Mapping[str, Any], name: str) -> int:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} is not a count: {value!r}")
    return value


def _amount(data: Mapping[str, Any], name: str) -> float:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} is not a finite number: {value!r}")
    if value < 0:
        raise ValueError(f"{name} is negative: {value!r}")
    return float(value)


def parse_ranker_state(partition: int, raw: bytes | str) -> RankerStats:
    """The counters of a stored ranker state; ValueError if it is not JSON or a counter is
    missing or impossible (a count below 0, more correct pairs than pairs).

    >>> parse_ranker_state(3, b'{"n_learned": 2, "n_pairs": 8, "pairs_correct": 6, '
    ...                       b'"loss_sum": 4.0, "learn_s": 0.001}').pairwise_accuracy
    0.75
    >>> parse_ranker_state(3, b'{"n_learned": 2}')
    Traceback (most recent call last):
    ...
    ValueError: damaged ranker state of partition 3: KeyError('n_pairs')
    """
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise TypeError(f"a JSON {type(data).__name__}, not an object")
        stats = RankerStats(
            partition=partition,
            updates=_count(data, "n_learned"),
            pairs=_count(data, "n_pairs"),
            pairs_correct=_count(data, "pairs_correct"),
            loss_sum=_amount(data, "loss_sum"),
            # older states had no learning time: 0, like a missing telemetry field
            learn_s=_amount(data, "learn_s") if "learn_s" in data else 0.0,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"damaged ranker state of partition {partition}: {exc!r}") from None
    if stats.pairs_correct > stats.pairs:
        raise ValueError(f"damaged ranker state of partition {partition}: more correct than pairs")
    return stats


def ranker_stats(partitions: Sequence[int], raws: Sequence[Any]) -> list[RankerStats]:
    """Each partition's stats from its raw state (an ``MGET`` reply, in ``partitions`` order).
    A partition with no state yet is left out; so is a damaged one (logged), never fatal.

    >>> ranker_stats([0, 1, 2], [b'{"n_learned": 1, "n_pairs": 2, "pairs_correct": 1, '
    ...                          b'"loss_sum": 1.0, "learn_s": 0.5}', None, b"{broken"])
    [RankerStats(partition=0, updates=1, pairs=2, pairs_correct=1, loss_sum=1.0, learn_s=0.5)]
    """
    out: list[RankerStats] = []
    for partition, raw in zip(partitions, raws, strict=True):
        if raw is None:
            continue
        try:
            out.append(parse_ranker_state(partition, raw))
        except ValueError as exc:
            log.warning("%s", exc)
    return out


def read_ranker_stats(client: Any, keys: CacheKeys, partitions: int) -> list[RankerStats]:
    """The stats of partitions ``0..partitions-1`` in one ``MGET`` (blocking client).

    >>> class FakeRedis:
    ...     def mget(self, names):
    ...         return [None] * len(names)
    >>> read_ranker_stats(FakeRedis(), CacheKeys(), 4)
    []
    """
    parts = list(range(partitions))
    if not parts:
        return []
    return ranker_stats(parts, client.mget([keys.ranker(p) for p in parts]))
