"""The stream model's statistics: user-side deltas, item rows, transitions, counted marks."""

from __future__ import annotations

import math

from models.events import DEFAULT_FEEDBACK, Interaction
from models.online.recommender import OnlineRecommender
from models.online.stream.deltas import (
    ItemDelta,
    apply_delta,
    deltas_by_item,
    merge_history,
    neighbor_list,
    successor_list,
    transitions,
    user_side_batch,
)
from stream_app.cache import MemoryCache
from stream_app.worker.live_path import LivePath
from stream_app.worker.online_scorer import OnlineScorer
from stream_app.worker.user_side import SortedBatch, batch_deltas, stamped_deltas

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


def _run(
    events: list[Interaction],
    batches: list[tuple[int, int]],
    sent: dict[int, int],
    rows: dict[str, dict] | None = None,
) -> dict[str, dict]:
    """Item rows after the user side sends ``batches`` (offset ranges, end exclusive) of
    ``events`` (partition 0, offset = position), starting from ``rows`` with the ``sent``
    marks; each batch moves them to its end, as ``UserSide.send_deltas`` does, and the item
    side applies every delta it gets."""
    rows = dict(rows or {})
    histories: dict[str, list[str]] = {}
    for e in events[: batches[0][0]]:
        histories[e.user_id] = merge_history(histories.get(e.user_id, []), [e.item_id], 200)
    for lo, hi in batches:
        part = events[lo:hi]
        positions = [(0, o) for o in range(lo, hi)]
        batch = SortedBatch(part, [], [e.timestamp_ms for e in part], positions)
        before = {e.user_id: list(histories.get(e.user_id, [])) for e in part}
        for group in stamped_deltas(batch, before, sent, DEFAULT_FEEDBACK, 200):
            for (item, _), delta in group.items():
                rows[item] = apply_delta(rows.get(item), delta, max_pairs=100)
        for e in part:
            histories[e.user_id] = merge_history(histories.get(e.user_id, []), [e.item_id], 200)
        sent = {0: max(sent.get(0, -1), hi - 1)}
    return rows


def test_a_replay_with_other_batch_boundaries_applies_each_delta_once() -> None:
    """A batch's deltas are applied, the worker dies before it counts the batch, and the
    replay cuts the same events into other batches: the item rows end as without the crash."""
    events = [Interaction(f"u{n % 3}", f"i{n % 7}", "view", T0 + n) for n in range(40)]
    clean = _run(events, [(0, 10), (10, 25), (25, 40)], {})
    crashed = _run(events, [(0, 10), (10, 25)], {})  # 10..24 sent, never counted
    # the replay starts after the counted 0..9, the sent mark at 24, and cuts elsewhere
    replayed = _run(events, [(10, 17), (17, 31), (31, 40)], {0: 24}, crashed)
    assert {i: (r["n"], r["p"]) for i, r in replayed.items()} == {
        i: (r["n"], r["p"]) for i, r in clean.items()
    }
    # without the sent marks (as before them) the replay applies 10..24 a second time
    doubled = _run(events, [(10, 17), (17, 31), (31, 40)], {}, crashed)
    assert sum(r["n"] for r in doubled.values()) > sum(r["n"] for r in clean.values())
