"""Live quality and freshness metrics, recorded per micro-batch into Redis so every worker adds to
the same numbers and the read API (``GET /metrics``) can expose them without talking to workers.

What is measured, and how it is counted:

- **Online HitRate@10 and MRR@10, sequential** (``hit_rate_at_10``, ``mrr_at_10``; the
  production form of prequential,
  test-then-train HitRate@10, comparable with the offline figure): a deterministic sample of
  events (``STREAMREC_HITRATE_SAMPLE``, by a hash of user, item and timestamp, so a reprocessed
  event is sampled the same way and first-in-batch events are as likely as any) is judged against
  the list the worker would have cached right *before that event*: for a user's first event of
  the batch, the list cached before the batch; for her j-th, the scorer's top-10 for her history
  before the batch plus her batch's first j-1 items (one extra scorer call per batch).
- **Online HitRate@10 and MRR@10, cached** (``hit_rate_at_10_cached``, ``mrr_at_10_cached``):
  every event judged against the list
  cached *before its batch*, i.e. what the user literally saw given micro-batches. Two events of
  one user in the same batch are both judged against that list (recommendations are rewritten
  once per batch), so this is lower than the sequential number when users' events share a batch
  (bursty replays). In both, a user with no cached list is judged against the fallback the API
  would have served (trending); with no fallback that trial is a miss. MRR@10 sums each trial's
  reciprocal rank at 10 (``1/rank`` in the top 10, else 0; ``models.evaluation.metrics``' rule)
  over the same trials as the HitRate it stands next to. An event on an item already in its
  user's history just before it is no trial in either form (the offline protocol's rule: seen
  items are never recommended, so such an event says nothing about the ranking).
- **Freshness**: for each event, ``written_at_ms - kafka_timestamp_ms`` where ``written_at_ms``
  is when its user's recommendations were written to Redis. Kept as a fixed-bucket histogram
  (Prometheus ``le`` semantics: a value equal to a bound falls in that bound's bucket); p50/p99
  are estimated from the buckets the way Prometheus' ``histogram_quantile`` does.
- **Model versions serving**: each worker writes its versions under its own key with a short TTL,
  so a dead worker's versions disappear instead of being reported forever.

``events`` and ``dlq`` totals are not written here: the live path already counts them under
``CacheKeys.stat(...)`` and the API's snapshot reads them from there (one counter, one writer).

Redis keys (all under the cache's version prefix, next to ``stream_app.cache.keys``):

=========================================  ======  =============================================
key                                        type    value
=========================================  ======  =============================================
``{prefix}:telemetry:hitrate``             hash    ``hits``, ``trials`` (cached, every event),
                                                   ``seq_hits``, ``seq_trials`` (sequential,
                                                   sampled events): integers; ``rr``,
                                                   ``seq_rr``: reciprocal-rank sums (floats)
``{prefix}:telemetry:freshness``           hash    one field per bucket bound (``"5"``, ...,
                                                   ``"+Inf"``, non-cumulative counts), ``sum_ms``
``{prefix}:telemetry:worker:{worker_id}``  hash    ``versions`` (JSON name -> version),
                                                   ``seen_at`` (epoch ms); expires after 60 s
``{prefix}:telemetry:workers``             zset    worker_id -> ``seen_at`` (the registry)
=========================================  ======  =============================================

``rr`` and ``seq_rr`` came after the hit counts: a hash without them reads as a sum of 0, so a
hash that counted trials before they existed under-reads MRR (window differences, as
``bench/e2e.py`` takes them, are exact).

The workers' ranker states (``CacheKeys.ranker(p)``, JSON checkpoints of each user-side
partition's River ranker) are read here too, for ``/metrics`` and the benchmark: only the
counters, parsed without River (:func:`parse_ranker_state`), so the API never loads a model.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from models.evaluation.metrics import rank_in_list
from stream_app.cache.keys import CacheKeys

log = logging.getLogger(__name__)

#: Upper bounds (ms) of the freshness buckets; a final ``+Inf`` bucket is implied.
FRESHNESS_BUCKETS_MS: tuple[float, ...] = (5, 10, 25, 50, 100, 200, 500, 1000, 2000, 5000)
HIT_K = 10
#: How long a worker's "I serve these versions" entry outlives its last batch.
WORKER_TTL_S = 60


# --------------------------------------------------------------------------- pure bucket math


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
class Trials:
    """Judged events of one online form: HitRate@10's hits and trials, and MRR@10's numerator
    (``rr``, the sum of ``1/rank`` over the hits), counted together so they share their trials.

    >>> Trials(1, 2, 0.5) + Trials(1, 1, 1.0)
    Trials(hits=2, trials=3, rr=1.5)
    """

    hits: int = 0
    trials: int = 0
    rr: float = 0.0

    def __add__(self, other: Trials) -> Trials:
        return Trials(self.hits + other.hits, self.trials + other.trials, self.rr + other.rr)


def judge(cases: Iterable[tuple[str, Sequence[str]]], k: int = HIT_K) -> Trials:
    """One trial per ``(item_id, ranked)`` (an event's item, the list it is judged against): a
    hit if the item is in the first ``k``, adding ``1/rank`` to ``rr``; a miss adds 0.

    >>> judge([("b", ["a", "b"]), ("z", ["a"]), ("a", ["a"])])
    Trials(hits=2, trials=3, rr=1.5)
    >>> judge([("b", ["a", "b"])], k=1)
    Trials(hits=0, trials=1, rr=0.0)
    """
    hits = trials = 0
    rr = 0.0
    for item_id, ranked in cases:
        trials += 1
        rank = rank_in_list(item_id, list(ranked[:k]))
        if rank is not None:
            hits += 1
            rr += 1.0 / rank
    return Trials(hits, trials, rr)


def online_hits(
    events: Iterable[tuple[str, str]],
    cached_top: Mapping[str, Sequence[str]],
    fallback: Sequence[str] = (),
    k: int = HIT_K,
) -> Trials:
    """The trials of a batch of ``(user_id, item_id)`` events against the lists cached before
    the batch. A user without a cached list is judged against ``fallback`` (what the API would
    have served her, normally trending); every event is one trial.

    >>> cached = {"u1": ["a", "b"], "u2": ["c"]}
    >>> online_hits([("u1", "b"), ("u1", "z"), ("u2", "c"), ("u3", "t")], cached, ["t"])
    Trials(hits=3, trials=4, rr=2.5)
    >>> online_hits([("u1", "b")], cached, k=1)
    Trials(hits=0, trials=1, rr=0.0)
    """
    return judge(((item_id, cached_top.get(user_id, fallback)) for user_id, item_id in events), k)


def sampled(user_id: str, item_id: str, timestamp_ms: int, rate: float) -> bool:
    """Whether an event is in the sequential HitRate sample: a hash of the event, not a random
    draw, so a reprocessed event (a restart, a rebalance) is sampled exactly as the first time,
    and not Python's ``hash`` (salted per process) so every worker agrees. Uniform over events.

    >>> sampled("u1", "i1", 1_700_000_000_000, 1.0), sampled("u1", "i1", 1_700_000_000_000, 0.0)
    (True, False)
    >>> sum(sampled("u", str(i), 0, 0.25) for i in range(4000))  # about a quarter
    974
    """
    if rate <= 0.0:
        return False
    digest = hashlib.blake2b(
        f"{user_id}\x00{item_id}\x00{timestamp_ms}".encode("utf-8", "surrogatepass"), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big") < rate * 2**64


def is_hit(item_id: str, ranked: Sequence[str], k: int = HIT_K) -> bool:
    """Whether ``item_id`` is in the first ``k`` of ``ranked`` (one HitRate@k trial).

    >>> is_hit("b", ["a", "b"]), is_hit("b", ["a", "b"], k=1)
    (True, False)
    """
    return rank_in_list(item_id, list(ranked[:k])) is not None


def freshness_ms(event_timestamps_ms: Iterable[int], written_at_ms: int) -> list[float]:
    """Per-event delay from the Kafka timestamp to the write of its user's recommendations.

    >>> freshness_ms([1_000, 1_250], 1_300)
    [300.0, 50.0]
    """
    return [float(written_at_ms - ts) for ts in event_timestamps_ms]


# --------------------------------------------------------------------------- batch and snapshot


@dataclass(frozen=True, slots=True)
class BatchTelemetry:
    """What one micro-batch adds to the shared metrics.

    Examples
    --------
    >>> b = BatchTelemetry.from_batch([1_000, 1_100], written_at_ms=1_120, hits=1, trials=2,
    ...                               rr=0.5, seq_hits=1, seq_trials=1, seq_rr=1.0,
    ...                               model_versions={"session": "v3"})
    >>> b.freshness_counts[:4], b.freshness_sum_ms
    ((0, 0, 1, 0), 140.0)
    """

    #: cached HitRate@10 and MRR@10: every event against its user's list cached before the batch
    hits: int = 0
    trials: int = 0
    rr: float = 0.0
    #: sequential HitRate@10 and MRR@10: sampled events against the list cached right before each
    seq_hits: int = 0
    seq_trials: int = 0
    seq_rr: float = 0.0
    freshness_counts: tuple[int, ...] = (0,) * (len(FRESHNESS_BUCKETS_MS) + 1)
    freshness_sum_ms: float = 0.0
    model_versions: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_batch(
        cls,
        event_timestamps_ms: Iterable[int],
        written_at_ms: int,
        *,
        hits: int,
        trials: int,
        rr: float = 0.0,
        seq_hits: int = 0,
        seq_trials: int = 0,
        seq_rr: float = 0.0,
        model_versions: Mapping[str, str],
    ) -> BatchTelemetry:
        delays = freshness_ms(event_timestamps_ms, written_at_ms)
        return cls(
            hits=hits,
            trials=trials,
            rr=rr,
            seq_hits=seq_hits,
            seq_trials=seq_trials,
            seq_rr=seq_rr,
            freshness_counts=tuple(bucket_counts(delays)),
            freshness_sum_ms=float(sum(delays)),
            model_versions=dict(model_versions),
        )


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
        return f"{self.cache_keys.prefix}:telemetry:hitrate"

    @property
    def freshness(self) -> str:
        return f"{self.cache_keys.prefix}:telemetry:freshness"

    def worker(self, worker_id: str) -> str:
        return f"{self.cache_keys.prefix}:telemetry:worker:{worker_id}"

    @property
    def workers(self) -> str:
        """Sorted set: worker id -> epoch ms of its last batch."""
        return f"{self.cache_keys.prefix}:telemetry:workers"


def bucket_field(i: int, bounds: Sequence[float] = FRESHNESS_BUCKETS_MS) -> str:
    """The hash field of bucket ``i`` (its bound as Prometheus prints ``le``).

    >>> bucket_field(0), bucket_field(10)
    ('5', '+Inf')
    """
    if i == len(bounds):
        return "+Inf"
    bound = bounds[i]
    return str(int(bound)) if float(bound).is_integer() else repr(float(bound))


class TelemetryRecorder:
    """Adds each batch's telemetry to Redis through a pipeline the caller owns or one it makes.

    Thin on purpose: the numbers come from the pure functions above; this only writes them.
    Works with redis-py's blocking client (call it from the worker's thread, like the cache).

    Examples
    --------
    >>> class FakePipe:
    ...     def __init__(self): self.ops = []
    ...     def __getattr__(self, name): return lambda *a, **k: self.ops.append((name, a))
    >>> pipe = FakePipe()
    >>> rec = TelemetryRecorder(client=None, worker_id="w1")
    >>> rec.add(pipe, BatchTelemetry(hits=1, trials=2))
    >>> pipe.ops[:2]
    [('hincrby', ('streamrec:v1:telemetry:hitrate', 'hits', 1)), ('hincrby', ('streamrec:v1:telemetry:hitrate', 'trials', 2))]
    """  # noqa: E501

    def __init__(
        self,
        client: Any,
        worker_id: str,
        keys: TelemetryKeys | None = None,
        worker_ttl_s: int = WORKER_TTL_S,
    ) -> None:
        self.client = client
        self.worker_id = worker_id
        self.keys = keys or TelemetryKeys()
        self.worker_ttl_s = worker_ttl_s

    def add(self, pipe: Any, batch: BatchTelemetry, now_ms: int | None = None) -> None:
        """Queue the batch's increments on ``pipe`` (nothing is sent until it executes)."""
        keys = self.keys
        if batch.hits:
            pipe.hincrby(keys.hitrate, "hits", batch.hits)
        if batch.trials:
            pipe.hincrby(keys.hitrate, "trials", batch.trials)
        if batch.rr:
            pipe.hincrbyfloat(keys.hitrate, "rr", batch.rr)
        if batch.seq_hits:
            pipe.hincrby(keys.hitrate, "seq_hits", batch.seq_hits)
        if batch.seq_trials:
            pipe.hincrby(keys.hitrate, "seq_trials", batch.seq_trials)
        if batch.seq_rr:
            pipe.hincrbyfloat(keys.hitrate, "seq_rr", batch.seq_rr)
        for i, count in enumerate(batch.freshness_counts):
            if count:
                pipe.hincrby(keys.freshness, bucket_field(i), count)
        if batch.freshness_sum_ms:
            pipe.hincrbyfloat(keys.freshness, "sum_ms", batch.freshness_sum_ms)
        if batch.model_versions:
            # The registry (a sorted set by last-seen time) lets readers find live workers
            # without SCANning a keyspace that holds a key per user.
            seen = int(time.time() * 1000) if now_ms is None else now_ms
            worker_key = keys.worker(self.worker_id)
            versions = json.dumps(dict(batch.model_versions), sort_keys=True)
            pipe.hset(worker_key, mapping={"versions": versions, "seen_at": str(seen)})
            pipe.expire(worker_key, self.worker_ttl_s)
            pipe.zadd(keys.workers, {self.worker_id: seen})
            pipe.zremrangebyscore(keys.workers, 0, seen - self.worker_ttl_s * 1000)

    def record(self, batch: BatchTelemetry, now_ms: int | None = None) -> None:
        """One pipeline, one round trip, for the batch's telemetry alone."""
        pipe = self.client.pipeline(transaction=False)
        self.add(pipe, batch, now_ms)
        pipe.execute()


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
    """
    h = {_text(k): v for k, v in hitrate.items()}
    f = {_text(k): v for k, v in freshness.items()}
    counts = tuple(_int(f.get(bucket_field(i, bounds))) for i in range(len(bounds) + 1))
    parsed_workers: dict[str, dict[str, str]] = {}
    for worker_id, entry in workers.items():
        fields = {_text(k): v for k, v in entry.items()}
        try:
            versions = json.loads(_text(fields.get("versions", b"{}")))
        except ValueError:
            continue
        if isinstance(versions, dict):
            parsed_workers[worker_id] = {str(k): str(v) for k, v in versions.items()}
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
    )


# --------------------------------------------------------------------------- ranker states


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
