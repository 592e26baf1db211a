"""Online MRR@10 next to the HitRate@10: the reciprocal-rank rule (the offline evaluator's), the
live path's two forms, the recorder's float fields and the snapshot's reading of old hashes.
No Redis: a fake pipeline applies HINCRBY / HINCRBYFLOAT the way Redis stores them (as text)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from models.evaluation.metrics import RankAccumulator
from models.events import Interaction
from stream_app.cache import MemoryCache
from stream_app.cache.base import Recommendation, UserRecs
from stream_app.cache.keys import CacheKeys
from stream_app.cache.telemetry import TelemetryKeys, parse_snapshot
from stream_app.worker.live_path import LearnsNothing, LivePath
from stream_app.worker.telemetry import (
    BatchTelemetry,
    TelemetryRecorder,
    Trials,
    judge,
    online_hits,
)

T0 = 1_700_000_000_000


def test_reciprocal_rank_at_10_by_hand_and_as_the_offline_evaluator_counts_it() -> None:
    items = [f"i{j}" for j in range(20)]
    # ranks 1, 4, 10 are hits (1 + 1/4 + 1/10); rank 11 and an absent item add nothing
    cases = [("i0", items), ("i3", items), ("i9", items), ("i10", items), ("zz", items)]
    judged = judge(cases)
    assert (judged.hits, judged.trials) == (3, 5)
    assert judged.rr == pytest.approx(1.35)
    offline = RankAccumulator(cutoffs=(10,))
    for rank in (1, 4, 10, 11, None):
        offline.add(rank)
    assert judged.rr / judged.trials == pytest.approx(offline.summary()["mrr@10"])


def test_cached_form_uses_the_fallback_rank_for_users_without_a_list() -> None:
    judged = online_hits([("u1", "b"), ("u2", "t2")], {"u1": ["a", "b"]}, fallback=["t1", "t2"])
    assert judged == Trials(hits=2, trials=2, rr=1.0)  # 1/2 + 1/2


class _ListScorer(LearnsNothing):
    """Serves a fixed list per last history item, with the whole ``Scorer`` protocol."""

    versions: Mapping[str, str] = {"lists": "l1"}

    def __init__(self, lists: Mapping[str, Sequence[str]], fail_on_call: int | None = None):
        self.lists = lists
        self.calls = 0
        self.fail_on_call = fail_on_call

    def candidates_needed(self, n: int, history_len: int) -> int:
        return n

    def recommend_batch(
        self,
        histories: Mapping[str, Sequence[str]],
        trending: Sequence[tuple[str, float]],
        n: int,
        excluded: Mapping[str, Sequence[str]] | None = None,
        *,
        between_batches: bool = False,
    ) -> dict[str, list[Recommendation]]:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("scorer bug")
        return {
            user: [Recommendation(i, 1.0, "") for i in self.lists.get(h[-1] if h else "", ())]
            for user, h in histories.items()
        }


def _burst(scorer: _ListScorer) -> list[BatchTelemetry]:
    """u had ["a", "x"] cached (x at rank 2), then views x, y, z in one batch."""
    cache = MemoryCache()
    cached = (Recommendation("a", 1.0, ""), Recommendation("x", 0.5, ""))
    cache.write_batch([UserRecs("u", cached, {}, T0)], 60, {})
    reported: list[BatchTelemetry] = []
    path = LivePath(
        cache,
        scorer,
        top_n=5,
        half_life_s=3600.0,
        rec_ttl_s=60,
        history_len=50,
        telemetry=reported.append,
        hitrate_sample=1.0,
    )
    events = [Interaction("u", item, "view", T0 + i) for i, item in enumerate("xyz")]
    path.process(events, {"u": ["w", "x", "y", "z"]}, dlq=0, before={"u": ["w"]})
    assert len(reported) == 1
    return reported


def test_live_path_reports_both_reciprocal_rank_sums() -> None:
    # after x the scorer serves ["q", "y"] (y at rank 2), after y it serves ["z"] (rank 1)
    batch = _burst(_ListScorer({"x": ["q", "y"], "y": ["z"]}))[0]
    # cached: x at rank 2 of the list before the batch; y and z are not on it
    assert (batch.hits, batch.trials, batch.rr) == (1, 3, 0.5)
    # sequential: x at rank 2 of the cached list, y at rank 2 after x, z at rank 1 after y
    assert (batch.seq_hits, batch.seq_trials, batch.seq_rr) == (3, 3, 2.0)


def test_a_failing_extra_call_drops_the_sequential_reciprocal_ranks_too() -> None:
    batch = _burst(_ListScorer({"x": ["q", "y"], "y": ["z"]}, fail_on_call=2))[0]
    assert (batch.seq_hits, batch.seq_trials, batch.seq_rr) == (0, 0, 0.0)
    assert (batch.hits, batch.trials, batch.rr) == (1, 3, 0.5)


class _RedisHashes:
    """HINCRBY / HINCRBYFLOAT on hashes kept as Redis keeps them: text values, bytes replies."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}
        self.ops: list[tuple[str, str, str]] = []

    def hincrby(self, key: str, name: str, amount: int) -> None:
        assert isinstance(amount, int)
        self.ops.append(("hincrby", key, name))
        fields = self.hashes.setdefault(key, {})
        fields[name] = str(int(fields.get(name, "0")) + amount)

    def hincrbyfloat(self, key: str, name: str, amount: float) -> None:
        self.ops.append(("hincrbyfloat", key, name))
        fields = self.hashes.setdefault(key, {})
        fields[name] = repr(float(fields.get(name, "0")) + amount)

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None  # the freshness and worker writes: not under test

    def hgetall(self, key: str) -> dict[bytes, bytes]:
        return {k.encode(): v.encode() for k, v in self.hashes.get(key, {}).items()}


def test_recorded_sums_read_back_as_both_mrrs() -> None:
    keys = TelemetryKeys(CacheKeys("t:v1"))
    redis = _RedisHashes()
    recorder = TelemetryRecorder(None, "w1", keys=keys)
    for rr, seq_rr in ((0.5, 2.0), (1.0 / 3, 0.0)):
        batch = BatchTelemetry(hits=1, trials=3, rr=rr, seq_hits=3, seq_trials=3, seq_rr=seq_rr)
        recorder.add(redis, batch)
    # floats go in with HINCRBYFLOAT, in the same hash as the hit counts; a 0 is not sent
    assert ("hincrbyfloat", keys.hitrate, "rr") in redis.ops
    assert redis.ops.count(("hincrbyfloat", keys.hitrate, "seq_rr")) == 1
    snap = parse_snapshot({}, redis.hgetall(keys.hitrate), {}, {})
    assert snap.mrr_at_10_cached == pytest.approx((0.5 + 1.0 / 3) / 6)
    assert snap.mrr_at_10 == pytest.approx(2.0 / 6)
    assert (snap.hit_rate_at_10, snap.hit_rate_at_10_cached) == (1.0, pytest.approx(2 / 6))


def test_a_hash_from_before_the_mrr_fields_still_reads() -> None:
    old = {b"hits": b"3", b"trials": b"6", b"seq_hits": b"1", b"seq_trials": b"4"}
    snap = parse_snapshot({}, old, {}, {})
    assert (snap.rr, snap.seq_rr) == (0.0, 0.0)
    assert (snap.mrr_at_10, snap.mrr_at_10_cached) == (0.0, 0.0)
    assert snap.hit_rate_at_10 == 0.25  # the hit counts are untouched
    empty = parse_snapshot({}, {}, {}, {})
    assert (empty.mrr_at_10, empty.mrr_at_10_cached) == (None, None)
