"""The worker's per-batch logic without Faust or Redis: validation, history, scoring, degrade."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from models.events import MAX_ID_LENGTH, Interaction, InvalidEvent
from models.online.stream.deltas import merge_history
from stream_app.cache import CacheUnavailable, MemoryCache, Recommendation, UserRecs
from stream_app.worker.live_path import (
    TRENDING_REASON,
    LearnsNothing,
    LivePath,
    TrendingScorer,
    items_by_user,
    parse_message,
    positions_in_batch,
    sequential_key,
    trending_top_n,
)
from stream_app.worker.telemetry import sampled
from stream_app.worker.user_side import sort_batch

T0 = 1_700_000_000_000


def _event_bytes(**overrides):
    payload = {"user_id": "u1", "item_id": "i1", "event_type": "view", "timestamp": T0}
    payload.update(overrides)
    return json.dumps(payload).encode()


MALFORMED = {
    "non-JSON bytes": b"\x00\x01binary\xff",
    "invalid utf-8": b"\xc3\x28",
    "empty value": b"",
    "null value": None,
    "JSON but not an object": b'["u1", "i1"]',
    "JSON null": b"null",
    "missing user_id": json.dumps({"item_id": "i", "event_type": "view", "timestamp": T0}).encode(),
    "missing timestamp": json.dumps(
        {"user_id": "u", "item_id": "i", "event_type": "view"}
    ).encode(),
    "wrong type timestamp": _event_bytes(timestamp="yesterday"),
    "bool user_id": _event_bytes(user_id=True),
    "dict item_id": _event_bytes(item_id={"id": 1}),
    "NaN value": b'{"user_id":"u","item_id":"i","event_type":"view","timestamp":1700000000000,'
    b'"value":NaN}',
    "huge user_id": _event_bytes(user_id="u" * (MAX_ID_LENGTH + 1)),
    "huge item_id": _event_bytes(item_id="i" * 1_000_000),
    "deeply nested": b"[" * 100_000 + b"]" * 100_000,
    "a string value": "not bytes at all",
    "an int value": 42,
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_messages_are_invalid_events_never_crashes(raw):
    with pytest.raises(InvalidEvent) as info:
        parse_message(raw)
    assert str(info.value)  # the reason that goes to the DLQ is never empty


def test_valid_bytes_parse_to_the_contract_event():
    assert parse_message(_event_bytes(user_id=7, value=2)) == Interaction(
        "7", "i1", "view", T0, 2.0
    )


def _faust_event(value, key=b"k", offset=0):
    message = SimpleNamespace(key=key, topic="events", partition=2, offset=offset, timestamp=1.5)
    return SimpleNamespace(value=value, message=message)


def test_sort_batch_splits_good_from_bad_with_reasons_and_origin():
    events = [_faust_event(_event_bytes(), offset=0)] + [
        _faust_event(raw, key=None, offset=n + 1) for n, raw in enumerate(MALFORMED.values())
    ]
    batch = sort_batch(events)
    assert [e.user_id for e in batch.valid] == ["u1"]
    assert len(batch.dead) == len(MALFORMED)
    for letter, offset in zip(batch.dead, range(1, len(MALFORMED) + 1), strict=True):
        assert letter.reason and letter.topic == "events" and letter.partition == 2
        assert letter.offset == offset and letter.message_timestamp_ms == 1500


def test_items_by_user_groups_in_event_time_order():
    events = [
        Interaction("u2", "x", "view", T0 + 5),
        Interaction("u1", "b", "view", T0 + 2),
        Interaction("u1", "a", "view", T0 + 1),
    ]
    assert items_by_user(events) == {"u1": ["a", "b"], "u2": ["x"]}


def test_history_is_distinct_recent_last_and_bounded():
    assert merge_history([], ["a", "b", "a"], 10) == ["b", "a"]
    assert merge_history(["a", "b", "c"], ["d", "e"], 3) == ["c", "d", "e"]
    assert merge_history(["a", "b"], ["a"], 5) == ["b", "a"]


def test_top_n_excludes_seen_items_keeps_trending_order_and_reason():
    trending = [("a", 9.0), ("b", 7.0), ("c", 5.0), ("d", 3.0), ("e", 1.0)]
    recs = trending_top_n(trending, seen={"b", "d"}, n=2)
    assert recs == [
        Recommendation("a", 9.0, TRENDING_REASON),
        Recommendation("c", 5.0, "trending now"),
    ]
    assert trending_top_n(trending, seen={x for x, _ in trending}, n=3) == []


def test_scorer_fetches_enough_candidates_to_survive_exclusions():
    scorer = TrendingScorer()
    history_len, n = 4, 2
    k = scorer.candidates_needed(n, history_len)
    trending = [(f"i{r}", float(100 - r)) for r in range(k)]
    seen = [f"i{r}" for r in range(history_len)]  # the user saw the top items
    recs = scorer.recommend_batch({"u": seen}, trending, n)["u"]
    assert len(recs) == n and not {r.item_id for r in recs} & set(seen)


def _path(cache, **kw):
    params = {"top_n": 3, "half_life_s": 3600.0, "rec_ttl_s": 60, "history_len": 50} | kw
    return LivePath(cache, TrendingScorer(), **params)


def test_every_affected_user_gets_recs_that_exclude_what_they_saw():
    cache = MemoryCache()
    path = _path(cache)
    events = [
        Interaction(f"u{u}", f"i{(u * 7 + k) % 12}", "click", T0 + k)
        for u in range(8)
        for k in range(4)
    ]
    histories = {u: items for u, items in items_by_user(events).items()}
    result = path.process(events, histories, dlq=2)
    assert (result.events, result.users, result.recs_written, result.degraded) == (32, 8, 8, False)
    for user, seen in histories.items():
        recs = cache.get_recs(user)
        assert recs is not None and len(recs.items) == 3
        assert not {r.item_id for r in recs.items} & set(seen)
        assert all(r.reason == "trending now" for r in recs.items)
        assert recs.model_versions == {"trending": "trending-v1"}
    stats = cache.get_stats()
    assert (stats["events"], stats["dlq"], stats["batches"], stats["recs_written"]) == (32, 2, 1, 8)


class _DownCache(MemoryCache):
    def update_trending(self, *args, **kwargs):
        raise CacheUnavailable("connection refused")


def test_a_cache_outage_degrades_instead_of_raising():
    path = _path(_DownCache())
    result = path.process([Interaction("u", "i", "view", T0)], {"u": ["i"]}, dlq=0)
    assert result.degraded and result.recs_written == 0
    assert path.pending_cache_errors == 1


def test_failed_writes_are_counted_once_redis_is_back(flaky_cache):
    cache = flaky_cache
    cache.fail_next = True
    path = _path(cache)
    events = [Interaction("u", "i", "view", T0)]
    assert path.process(events, {"u": ["i"]}, dlq=0).degraded
    assert not path.process(events, {"u": ["i"]}, dlq=0).degraded
    assert cache.get_stats()["redis_errors"] == 1
    assert path.pending_cache_errors == 0


def test_recs_and_counters_wait_for_durable_and_a_failure_writes_neither():
    cache = MemoryCache()
    path = _path(cache)
    calls = []

    def durable():
        # by now trending has moved, but no recs and no counted events are written yet
        calls.append((cache.get_recs("u"), cache.get_stats()["events"]))

    path.process([Interaction("u", "i", "view", T0)], {"u": ["i"]}, dlq=0, durable=durable)
    assert calls == [(None, 0)]
    assert cache.get_recs("u") is not None and cache.get_stats()["events"] == 1

    def broken():
        raise TimeoutError("deltas not acknowledged")

    with pytest.raises(TimeoutError):
        path.process([Interaction("v", "i", "view", T0)], {"v": ["i"]}, dlq=0, durable=broken)
    assert cache.get_recs("v") is None and cache.get_stats()["events"] == 1


def test_a_batch_of_only_dead_letters_still_counts_them():
    cache = MemoryCache()
    result = _path(cache).process([], {}, dlq=5)
    assert result.recs_written == 0 and not result.degraded
    assert cache.get_stats()["dlq"] == 5


def test_an_event_from_the_far_future_cannot_wipe_trending():
    cache = MemoryCache()
    path = _path(cache)
    now = int(__import__("time").time() * 1000)
    path.process([Interaction("u1", "real", "view", now)], {"u1": ["real"]}, dlq=0)
    rogue = Interaction("u2", "rogue", "view", now + 10**15)  # ~30,000 years ahead
    path.process([rogue], {"u2": ["rogue"]}, dlq=0)
    top = dict(cache.top_trending(5, 3600.0, now))
    assert top["real"] > 0.5  # still there: the rogue event was clamped to about now


def test_telemetry_judges_each_event_against_the_list_cached_before_its_batch():
    cache = MemoryCache()
    reported = []
    path = _path(cache, top_n=2, telemetry=reported.append)
    first = [Interaction("u1", "a", "view", T0), Interaction("u2", "b", "view", T0)]
    path.process(first, {"u1": ["a"], "u2": ["b"]}, dlq=0, kafka_ts_ms=[T0, T0])
    # Nothing was cached and nothing trending before the first batch: two misses.
    assert (reported[0].hits, reported[0].trials) == (0, 2)
    # u1 was served ["b"] (trending, minus "a"): clicking "b" now is a hit; u3 had no list
    # and is judged against the trending top the API served after the first batch.
    second = [Interaction("u1", "b", "click", T0 + 1), Interaction("u3", "a", "view", T0 + 1)]
    path.process(second, {"u1": ["a", "b"], "u3": ["a"]}, dlq=0, kafka_ts_ms=[T0, T0])
    assert (reported[1].hits, reported[1].trials) == (2, 2)
    assert reported[1].model_versions == {"trending": "trending-v1"}
    # Freshness: write time minus the Kafka timestamps, one sample per event.
    assert sum(reported[1].freshness_counts) == 2
    before_write = int(__import__("time").time() * 1000)
    assert reported[1].freshness_sum_ms >= 2 * (before_write - T0) - 10_000  # written ~now


def test_broken_telemetry_never_costs_recommendations():
    cache = MemoryCache()

    def broken(_batch):
        raise ConnectionError("metrics store down")

    path = _path(cache, telemetry=broken)
    result = path.process([Interaction("u", "i", "view", T0)], {"u": ["i"]}, dlq=0)
    assert not result.degraded and result.recs_written == 1


# --------------------------------------------------------------------------- sequential HitRate


class _ChainScorer(LearnsNothing):
    """Recommends the item that follows a user's last item in a fixed chain (then nothing), and
    records every call, so a test can tell which list each event was judged against."""

    def __init__(self, chain, fail_on_call=None):
        self.versions = {"chain": "c1"}
        self.chain = chain
        self.calls = []
        self.fail_on_call = fail_on_call

    def candidates_needed(self, n, history_len):
        return n

    def recommend_batch(self, histories, trending, n, excluded=None, *, between_batches=False):
        self.calls.append({user: list(h) for user, h in histories.items()})
        if self.fail_on_call == len(self.calls):
            raise RuntimeError("scorer bug")
        out = {}
        for user, history in histories.items():
            nxt = self.chain.get(history[-1]) if history else None
            out[user] = [] if nxt is None or nxt in history else [Recommendation(nxt, 1.0, "")]
        return out


def _burst(cache, scorer, sample, before, items="xyz"):
    """User u, history ["w"], cached list ["x"], then ``items`` (x, y, z) in one batch."""
    cache.write_batch([UserRecs("u", (Recommendation("x", 1.0, ""),), {}, T0)], 60, {})
    reported = []
    path = LivePath(
        cache,
        scorer,
        top_n=3,
        half_life_s=3600.0,
        rec_ttl_s=60,
        history_len=50,
        telemetry=reported.append,
        hitrate_sample=sample,
    )
    events = [Interaction("u", item, "view", T0 + i) for i, item in enumerate(items)]
    after = merge_history((before or {}).get("u", ["w"]), list(items), 50)
    result = path.process(events, {"u": after}, dlq=0, before=before)
    return result, reported


def test_sequential_judges_each_event_against_the_list_right_before_it():
    scorer = _ChainScorer({"x": "y", "y": "q", "z": "x"})
    result, reported = _burst(MemoryCache(), scorer, 1.0, before={"u": ["w"]})
    assert result.recs_written == 1 and len(reported) == 1
    batch = reported[0]
    # Cached: all three against ["x"] (cached before the batch): only x is a hit.
    assert (batch.hits, batch.trials) == (1, 3)
    # Sequential: x against ["x"] (hit), y against the list after x, ["y"] (hit), z against
    # the list after y, ["q"] (miss).
    assert (batch.seq_hits, batch.seq_trials) == (2, 3)
    # One scoring call for the batch, ONE extra for the sampled later events, keyed synthetically
    # with the history before the batch plus the batch's earlier items.
    assert len(scorer.calls) == 2
    assert scorer.calls[1] == {
        sequential_key("u", 2): ["w", "x"],
        sequential_key("u", 3): ["w", "x", "y"],
    }


def test_an_event_on_an_item_its_user_had_already_seen_is_no_trial():
    """Offline prequential does not score repeats (seen items are never recommended); the
    live counts follow the same rule, in both forms, for items seen before the batch or
    earlier in it."""
    scorer = _ChainScorer({"x": "y", "y": "q", "z": "x"})
    # w was seen before the batch, x is seen again later in it: two repeats, x and y judged.
    _, reported = _burst(MemoryCache(), scorer, 1.0, before={"u": ["w"]}, items="wxyx")
    batch = reported[0]
    # Cached: x and y against ["x"]; sequential: x against the list after w (w has no chain:
    # a miss), y against the list after x, ["y"] (a hit).
    assert (batch.hits, batch.trials) == (1, 2)
    assert (batch.seq_hits, batch.seq_trials) == (1, 2)


def test_sample_rate_zero_or_no_before_means_no_sequential_trials_and_no_extra_call():
    for sample, before in ((0.0, {"u": ["w"]}), (1.0, None)):
        scorer = _ChainScorer({"x": "y"})
        _, reported = _burst(MemoryCache(), scorer, sample, before)
        assert (reported[0].seq_hits, reported[0].seq_trials) == (0, 0)
        assert (reported[0].hits, reported[0].trials) == (1, 3)  # the cached one still counts
        assert len(scorer.calls) == 1


def test_a_failing_extra_call_drops_the_batch_sample_but_not_the_recs():
    scorer = _ChainScorer({"x": "y"}, fail_on_call=2)
    result, reported = _burst(MemoryCache(), scorer, 1.0, before={"u": ["w"]})
    assert result.recs_written == 1 and not result.degraded
    # Keeping only the first event's (judged) trial would bias the sample: all of it goes.
    assert (reported[0].seq_hits, reported[0].seq_trials) == (0, 0)
    assert (reported[0].hits, reported[0].trials) == (1, 3)


def test_sequential_sample_is_the_deterministic_hash_sample_over_all_events():
    events = [
        Interaction(f"u{u}", f"i{(u * 5 + k) % 40}", "view", T0 + k)
        for u in range(30)
        for k in range(6)
    ]
    before = {f"u{u}": [] for u in range(30)}
    histories = items_by_user(events)
    expected = sum(sampled(e.user_id, e.item_id, e.timestamp_ms, 0.5) for e in events)
    firsts = sum(
        sampled(e.user_id, e.item_id, e.timestamp_ms, 0.5)
        for e, j in positions_in_batch(events)
        if j == 1
    )
    assert 0 < firsts < 30 and expected > firsts  # both kinds of event are in the sample
    trials = []
    for _ in range(2):  # a reprocessed batch is sampled the same way
        reported = []
        path = _path(MemoryCache(), telemetry=reported.append, hitrate_sample=0.5)
        path.process(events, histories, dlq=0, before=before)
        trials.append(reported[0].seq_trials)
    assert trials == [expected, expected]


def test_positions_follow_event_time_per_user():
    events = [
        Interaction("u", "c", "view", T0 + 3),
        Interaction("v", "a", "view", T0 + 1),
        Interaction("u", "a", "view", T0 + 1),
        Interaction("u", "b", "view", T0 + 1),  # a tie keeps arrival order
    ]
    got = [(e.user_id, e.item_id, j) for e, j in positions_in_batch(events)]
    assert got == [("v", "a", 1), ("u", "a", 1), ("u", "b", 2), ("u", "c", 3)]


@pytest.mark.parametrize("sample", [-0.1, 1.5, float("nan")])
def test_a_sample_rate_outside_0_1_is_refused(sample):
    with pytest.raises(ValueError, match="hitrate_sample"):
        _path(MemoryCache(), hitrate_sample=sample)
