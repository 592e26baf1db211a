"""The stream model's statistics: user-side deltas, item rows, transitions, counted marks."""

from __future__ import annotations

import math

from models.events import Interaction
from models.online.recommender import OnlineRecommender
from models.online.stream.deltas import (
    ItemDelta,
    apply_delta,
    deltas_by_item,
    neighbor_list,
    successor_list,
    transitions,
    user_side_batch,
)
from stream_app.cache import MemoryCache
from stream_app.worker.live_path import LivePath
from stream_app.worker.online_scorer import OnlineScorer
from stream_app.worker.user_side import SortedBatch, batch_deltas

T0 = 1_700_000_000_000


def _rows_from(events: list[tuple[str, str]]) -> dict[str, dict]:
    """Replay (user, item) views through the stream's user and item sides."""
    histories: dict[str, list[str]] = {}
    rows: dict[str, dict] = {}
    for user, item in events:
        learned = user_side_batch(histories.get(user, []), [(item, 1.0)], window=10)
        histories.setdefault(user, []).append(item)
        for key, delta in deltas_by_item(learned).items():
            rows[key] = apply_delta(rows.get(key), delta, max_pairs=100)
    return rows


def test_stream_cosine_matches_the_online_models_item_similarity() -> None:
    events = [("a", "x"), ("a", "y"), ("b", "x"), ("b", "z"), ("c", "y"), ("c", "x")]
    rows = _rows_from(events)
    norms = {item: row["n"] for item, row in rows.items()}
    rec = OnlineRecommender(window=10, reranker=None, content=False)
    for n, (user, item) in enumerate(events):
        rec.learn_one(Interaction(user, item, "view", T0 + n))
    reference = rec.similarity
    for item in ("x", "y", "z"):
        ours = dict(neighbor_list(rows[item], norms[item], norms, m=10))
        assert ours  # every item here co-occurs with another
        for other, sim in ours.items():
            assert math.isclose(sim, reference.similarity(item, other), rel_tol=1e-9)


def test_a_resent_delta_is_not_applied_twice() -> None:
    delta = ItemDelta(1.0, {"b": 2.0}, (3, 100))
    once = apply_delta(None, delta, max_pairs=10)
    assert apply_delta(once, delta, max_pairs=10) == once
    later = apply_delta(once, ItemDelta(1.0, {"b": 1.0}, (3, 101)), max_pairs=10)
    assert later["p"] == {"b": 3.0} and later["n"] == 2.0
    other_partition = apply_delta(later, ItemDelta(1.0, {}, (1, 5)), max_pairs=10)
    assert other_partition["n"] == 3.0


def test_rows_keep_only_their_heaviest_pairs() -> None:
    # max_pairs=2 allows 3 entries (the slack); a 4th cuts the row back to the 2 heaviest.
    row = apply_delta(None, ItemDelta(1.0, {"a": 1.0, "b": 3.0, "c": 2.0}), max_pairs=2)
    assert row["p"] == {"a": 1.0, "b": 3.0, "c": 2.0}
    row = apply_delta(row, ItemDelta(0.0, {"d": 2.5}), max_pairs=2)
    assert row["p"] == {"b": 3.0, "d": 2.5}


def test_batch_deltas_group_by_source_partition_and_skip_replayed_events() -> None:
    events = [Interaction("u", "a", "view", T0), Interaction("u", "b", "view", T0 + 1)]
    batch = SortedBatch(events, [], [T0, T0 + 1], [(2, 10), (2, 11)])
    fresh = batch.fresh({2: 10})
    assert [e.item_id for e in fresh.valid] == ["b"] and fresh.last_offsets() == {2: 11}
    deltas = batch_deltas(fresh, {"u": ["a"]})
    assert deltas[("b", 2)].pairs == {"a": 1.0} and deltas[("b", 2)].src == (2, 11)
    assert deltas[("a", 2)].norm == 0.0 and deltas[("a", 2)].pairs == {"b": 1.0}


def test_counters_move_with_the_high_water_marks() -> None:
    cache = MemoryCache()
    path = LivePath(
        cache, OnlineScorer(cache), top_n=3, half_life_s=3600, rec_ttl_s=60, history_len=10
    )
    events = [Interaction("u", "a", "view", T0)]
    path.process(events, {"u": ["a"]}, dlq=0, hwm=("events", [(0, 7)]))
    assert cache.read_hwm("events") == {0: 7}
    assert cache.get_stats()["events"] == 1 and cache.get_stats()["batches"] == 1
    # The same event handed over again (a restart, a rebalance): counted once.
    path.process(events, {"u": ["a"]}, dlq=0, hwm=("events", [(0, 7)]))
    assert cache.get_stats()["events"] == 1 and cache.get_stats()["batches"] == 2
    assert cache.top_trending(5, 3600, T0) == [("a", 1.0)]


def test_stream_transitions_match_the_online_models_transitions() -> None:
    events = [("a", "x"), ("a", "y"), ("b", "x"), ("b", "y"), ("c", "x"), ("c", "z"), ("c", "z")]
    histories: dict[str, list[str]] = {}
    rows: dict[str, dict] = {}
    for user, item in events:
        history = histories.get(user, [])
        learned = user_side_batch(history, [(item, 1.0)], window=10)
        for key, delta in deltas_by_item(learned, transitions(history, [item])).items():
            rows[key] = apply_delta(rows.get(key), delta, max_pairs=100)
        histories.setdefault(user, []).append(item)
    rec = OnlineRecommender(window=10, reranker=None, content=False)
    for n, (user, item) in enumerate(events):
        rec.learn_one(Interaction(user, item, "view", T0 + n))
    x = rec.vocab.get("x")
    reference = rec.transitions.probabilities(x, len(rec.vocab))
    ours = dict(successor_list(rows["x"], m=10))
    assert ours == {"y": 2 / 3, "z": 1 / 3}
    for item, p in ours.items():
        assert math.isclose(p, reference[rec.vocab.get(item)])
    assert "t" not in rows["y"]  # nobody went anywhere after y
