"""The worker's side of the telemetry: judging each batch's events against the lists served
before them (online HitRate@10 and MRR@10, sequential and cached) and adding the batch's
numbers to Redis, where every worker adds to the same counters.

How the trials are counted, and the keys they land in: docs/stream.md, "Telemetry".
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from models.evaluation.metrics import rank_in_list
from stream_app.cache.telemetry import (
    FRESHNESS_BUCKETS_MS,
    HIT_K,
    WORKER_TTL_S,
    TelemetryKeys,
    bucket_counts,
    bucket_field,
)

log = logging.getLogger(__name__)


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
        #: the versions of the last batch, which a heartbeat repeats
        self.versions: Mapping[str, str] = {}

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
            self.versions = dict(batch.model_versions)
            self._register(pipe, now_ms)

    def _register(self, pipe: Any, now_ms: int | None) -> None:
        """This worker's entry in the registry (a sorted set by last-seen time), which lets
        readers find live workers without SCANning a keyspace that holds a key per user."""
        keys = self.keys
        seen = int(time.time() * 1000) if now_ms is None else now_ms
        worker_key = keys.worker(self.worker_id)
        versions = json.dumps(dict(self.versions), sort_keys=True)
        pipe.hset(worker_key, mapping={"versions": versions, "seen_at": str(seen)})
        pipe.expire(worker_key, self.worker_ttl_s)
        pipe.zadd(keys.workers, {self.worker_id: seen})
        pipe.zremrangebyscore(keys.workers, 0, seen - self.worker_ttl_s * 1000)

    def heartbeat(self, now_ms: int | None = None) -> None:
        """Register this worker now, with the versions of its last batch: an idle worker is
        alive, and ``/health`` must not call it gone (``WORKER_HEARTBEAT_S``)."""
        pipe = self.client.pipeline(transaction=False)
        self._register(pipe, now_ms)
        pipe.execute()

    def record(self, batch: BatchTelemetry, now_ms: int | None = None) -> None:
        """One pipeline, one round trip, for the batch's telemetry alone."""
        pipe = self.client.pipeline(transaction=False)
        self.add(pipe, batch, now_ms)
        pipe.execute()
