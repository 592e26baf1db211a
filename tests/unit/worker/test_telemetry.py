"""Bucket math against hand-computed examples, online HitRate counting, and the Redis recorder's
writes through a fake pipeline (no Redis needed)."""

from __future__ import annotations

import json

import pytest

from stream_app.cache.keys import CacheKeys
from stream_app.cache.telemetry import (
    FRESHNESS_BUCKETS_MS,
    RankerStats,
    TelemetryKeys,
    bucket_counts,
    bucket_field,
    bucket_index,
    cumulative,
    parse_ranker_state,
    parse_snapshot,
    quantile_from_buckets,
    ranker_stats,
)
from stream_app.worker.telemetry import BatchTelemetry, TelemetryRecorder, online_hits, sampled

BOUNDS = (10.0, 20.0, 40.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), (10, 0), (10.001, 1), (20, 1), (39, 2), (40, 2), (40.5, 3), (-5, 0), (1e9, 3)],
)
def test_bucket_index_uses_le_semantics(value: float, expected: int) -> None:
    assert bucket_index(value, BOUNDS) == expected


def test_bucket_counts_and_cumulative_by_hand() -> None:
    counts = bucket_counts([3, 10, 11, 25, 26, 39, 100], BOUNDS)
    assert counts == [2, 1, 3, 1]
    assert cumulative(counts) == [2, 3, 6, 7]


def test_default_buckets_have_an_inf_slot() -> None:
    assert len(bucket_counts([1.0], FRESHNESS_BUCKETS_MS)) == len(FRESHNESS_BUCKETS_MS) + 1
    assert [bucket_field(i) for i in range(len(FRESHNESS_BUCKETS_MS) + 1)][-3:] == [
        "2000",
        "5000",
        "+Inf",
    ]


@pytest.mark.parametrize(
    ("counts", "q", "expected"),
    [
        # 10 values all in (10, 20]: rank 5 is halfway through -> 15
        ([0, 10, 0, 0], 0.5, 15.0),
        # rank 1 of 4 in the first bucket [0, 10] holding 2 -> 0 + 10 * 1/2
        ([2, 2, 0, 0], 0.25, 5.0),
        # rank 3.96 of 4: bucket (10,20] holds ranks 2..4 -> 10 + 10 * (3.96-2)/2 = 19.8
        ([2, 2, 0, 0], 0.99, 19.8),
        # rank in the +Inf bucket -> the largest finite bound
        ([1, 0, 0, 3], 0.5, 40.0),
        # q = 0 -> lower edge of the first non-empty bucket
        ([0, 0, 5, 0], 0.0, 20.0),
        # q = 1 -> top of the last non-empty finite bucket
        ([1, 1, 0, 0], 1.0, 20.0),
    ],
)
def test_quantile_from_buckets_by_hand(counts: list[int], q: float, expected: float) -> None:
    assert quantile_from_buckets(counts, q, BOUNDS) == pytest.approx(expected)


def test_quantile_of_empty_histogram_is_none_and_bad_input_raises() -> None:
    assert quantile_from_buckets([0, 0, 0, 0], 0.5, BOUNDS) is None
    with pytest.raises(ValueError):
        quantile_from_buckets([1, 2], 0.5, BOUNDS)
    with pytest.raises(ValueError):
        quantile_from_buckets([1, 0, 0, 0], 1.5, BOUNDS)


def test_online_hits_judges_every_event_against_the_list_before_the_batch() -> None:
    cached = {"u1": [f"i{j}" for j in range(20)]}
    events = [
        ("u1", "i9"),  # position 10: a hit at k=10
        ("u1", "i10"),  # position 11: a miss
        ("u1", "i9"),  # same user twice in the batch: judged on the same pre-batch list
        ("u2", "t1"),  # no cached list: judged on the fallback
        ("u3", "x"),  # no cached list, not in fallback
    ]
    judged = online_hits(events, cached, fallback=["t0", "t1"])
    assert (judged.hits, judged.trials) == (3, 5)
    judged = online_hits(events, cached)
    assert (judged.hits, judged.trials) == (2, 5)


def test_batch_telemetry_from_batch_buckets_each_event() -> None:
    batch = BatchTelemetry.from_batch(
        [10_000, 10_090, 9_000], 10_100, hits=2, trials=3, model_versions={"cf": "v1"}
    )
    # delays 100, 10, 1100 ms -> buckets le=100 (idx 4), le=10 (idx 1), le=2000 (idx 8)
    expected = [0] * 11
    expected[4] = expected[1] = expected[8] = 1
    assert list(batch.freshness_counts) == expected
    assert batch.freshness_sum_ms == 1210.0


class FakePipe:
    def __init__(self) -> None:
        self.ops: list[tuple[str, tuple, dict]] = []
        self.executed = 0

    def __getattr__(self, name: str):
        def call(*args, **kwargs):
            self.ops.append((name, args, kwargs))

        return call

    def execute(self) -> list:
        self.executed += 1
        return []


class FakeClient:
    def __init__(self) -> None:
        self.pipes: list[FakePipe] = []

    def pipeline(self, transaction: bool = True) -> FakePipe:
        assert transaction is False
        self.pipes.append(FakePipe())
        return self.pipes[-1]


def test_recorder_writes_one_pipeline_per_batch_with_the_right_keys() -> None:
    client = FakeClient()
    keys = TelemetryKeys(CacheKeys("t:v1"))
    rec = TelemetryRecorder(client, worker_id="w7", keys=keys, worker_ttl_s=30)
    batch = BatchTelemetry.from_batch(
        [1_000], 1_004, hits=1, trials=1, model_versions={"session": "s2"}
    )
    rec.record(batch, now_ms=1_004)
    assert len(client.pipes) == 1 and client.pipes[0].executed == 1
    ops = client.pipes[0].ops
    assert ("hincrby", ("t:v1:telemetry:hitrate", "hits", 1), {}) in ops
    assert ("hincrby", ("t:v1:telemetry:freshness", "5", 1), {}) in ops
    assert ("hincrbyfloat", ("t:v1:telemetry:freshness", "sum_ms", 4.0), {}) in ops
    hset = next(op for op in ops if op[0] == "hset")
    assert hset[1] == ("t:v1:telemetry:worker:w7",)
    assert json.loads(hset[2]["mapping"]["versions"]) == {"session": "s2"}
    assert ("expire", ("t:v1:telemetry:worker:w7", 30), {}) in ops
    assert ("zadd", ("t:v1:telemetry:workers", {"w7": 1_004}), {}) in ops
    assert ("zremrangebyscore", ("t:v1:telemetry:workers", 0, 1_004 - 30_000), {}) in ops


def test_recorder_skips_zero_increments() -> None:
    pipe = FakePipe()
    TelemetryRecorder(None, "w").add(pipe, BatchTelemetry())
    assert pipe.ops == []


def test_parse_snapshot_round_trips_what_the_recorder_writes() -> None:
    batch = BatchTelemetry.from_batch(
        [0, 0, 0, 0], 300, hits=1, trials=4, model_versions={"session": "v1"}
    )
    freshness = {bucket_field(i): c for i, c in enumerate(batch.freshness_counts) if c}
    freshness["sum_ms"] = batch.freshness_sum_ms
    snap = parse_snapshot(
        {"events": 4, "dlq": 2},
        {"hits": "1", "trials": "4"},
        freshness,
        {
            "w1": {b"versions": b'{"session": "v1"}'},
            "w2": {b"versions": b'{"session": "v2", "cf": "c1"}'},
            "broken": {b"versions": b"not json"},
        },
    )
    assert (snap.events, snap.dlq, snap.hit_rate_at_10_cached) == (4, 2, 0.25)
    assert snap.hit_rate_at_10 is None  # no sequential trials recorded
    assert snap.freshness_counts[6] == 4  # 300 ms falls in le=500
    assert snap.freshness_quantile(0.5) == pytest.approx(200 + 300 * 0.5)
    assert snap.model_versions == {"cf": ["c1"], "session": ["v1", "v2"]}
    assert set(snap.workers) == {"w1", "w2"}


def test_recorder_writes_the_sequential_counts_next_to_the_cached_ones() -> None:
    pipe = FakePipe()
    batch = BatchTelemetry.from_batch(
        [1_000], 1_004, hits=2, trials=5, seq_hits=1, seq_trials=3, model_versions={}
    )
    TelemetryRecorder(None, "w", keys=TelemetryKeys(CacheKeys("t:v1"))).add(pipe, batch)
    hitrate = {op[1][1]: op[1][2] for op in pipe.ops if op[1][0] == "t:v1:telemetry:hitrate"}
    assert hitrate == {"hits": 2, "trials": 5, "seq_hits": 1, "seq_trials": 3}
    assert all(op[0] == "hincrby" for op in pipe.ops if op[1][0] == "t:v1:telemetry:hitrate")


def test_snapshot_headline_rate_is_the_sequential_one() -> None:
    snap = parse_snapshot(
        {}, {b"hits": b"1", b"trials": b"10", b"seq_hits": b"2", b"seq_trials": b"5"}, {}, {}
    )
    assert (snap.seq_hits, snap.seq_trials) == (2, 5)
    assert snap.hit_rate_at_10 == 0.4
    assert snap.hit_rate_at_10_cached == 0.1


def test_sampling_is_deterministic_uniform_and_nested_by_rate() -> None:
    events = [(f"u{i % 97}", f"i{i}", 1_700_000_000_000 + i) for i in range(4000)]
    at_half = {e for e in events if sampled(*e, 0.5)}
    assert at_half == {e for e in events if sampled(*e, 0.5)}
    assert 0.45 < len(at_half) / len(events) < 0.55
    at_tenth = {e for e in events if sampled(*e, 0.1)}
    assert at_tenth < at_half  # one threshold on one hash: a lower rate is a subset
    assert not any(sampled(*e, 0.0) for e in events)
    assert all(sampled(*e, 1.0) for e in events)
    # The timestamp is part of the event's identity: a re-view later is a new draw.
    assert {sampled("u1", "i1", ts, 0.5) for ts in range(64)} == {True, False}


def test_sampling_is_pinned_across_processes_and_machines() -> None:
    # Python's hash() of a str is salted per process: two workers (or a restarted one) using it
    # would sample a reprocessed event differently. A fixed pattern pins the hash instead.
    drawn = "".join("1" if sampled("u", str(i), i, 0.5) else "0" for i in range(64))
    assert drawn == "1010100001101000111100100010111010110110000111101001011101101111"


def test_ranker_counters_read_back_from_the_workers_own_state() -> None:
    from models.online.stream import FEATURES, StreamRanker

    ranker = StreamRanker(min_trained=1)
    ranker.learn([[1.0] + [0.0] * (len(FEATURES) - 1)] * 3)
    ranker.learn([[-1.0] + [0.0] * (len(FEATURES) - 1)] * 2)
    stats = parse_ranker_state(5, ranker.to_json())
    assert stats == RankerStats(
        partition=5,
        updates=ranker.n_updates,
        pairs=ranker.n_pairs,
        pairs_correct=ranker.pairs_correct,
        loss_sum=ranker.loss_sum,
        learn_s=ranker.learn_s,
    )
    assert (stats.updates, stats.pairs) == (2, 5)
    # the first 3 pairs meet zero weights (margin 0: not right), loss log(2) each
    assert stats.pairs_correct == ranker.pairs_correct < 5
    assert stats.mean_log_loss == pytest.approx(ranker.loss_sum / 5)
    assert stats.learn_s_per_update == pytest.approx(ranker.learn_s / 2)


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1, 2]",
        b'{"n_learned": 1, "n_pairs": 2, "pairs_correct": 1}',  # no loss_sum
        b'{"n_learned": -1, "n_pairs": 2, "pairs_correct": 1, "loss_sum": 1.0}',
        b'{"n_learned": 1, "n_pairs": 2, "pairs_correct": 3, "loss_sum": 1.0}',
        b'{"n_learned": 1.5, "n_pairs": 2, "pairs_correct": 1, "loss_sum": 1.0}',
        b'{"n_learned": 1, "n_pairs": 2, "pairs_correct": 1, "loss_sum": "x"}',
        b'{"n_learned": 1, "n_pairs": 2, "pairs_correct": 1, "loss_sum": NaN}',
    ],
)
def test_a_damaged_ranker_state_is_refused_and_left_out(raw: bytes) -> None:
    with pytest.raises(ValueError, match="damaged ranker state of partition 1"):
        parse_ranker_state(1, raw)
    good = b'{"n_learned": 1, "n_pairs": 2, "pairs_correct": 1, "loss_sum": 1.0}'
    assert [s.partition for s in ranker_stats([0, 1, 2], [good, raw, None])] == [0]
