"""The worker's side of negative feedback: the history row that holds a user's exclusions,
item deltas and trending that a negative event never feeds, and served lists without the items
a user turned down (the in-process model is held equal to this path in test_stream_scoring)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from models.events import Feedback, Interaction
from models.online.stream.reasons import ACTS_KEPT
from stream_app.cache import CacheKeys, MemoryCache
from stream_app.settings import Settings
from stream_app.worker.live_path import LivePath, TrendingScorer
from stream_app.worker.user_side import SortedBatch, UserRow, UserSide, batch_deltas

T0 = 1_700_000_000_000


def _side(table: dict[bytes, Any], **env: str) -> UserSide:
    settings = Settings.from_env({f"STREAMREC_{k.upper()}": v for k, v in env.items()})
    topology: Any = SimpleNamespace(history=table)
    return UserSide(topology, settings, MemoryCache(), None, None, CacheKeys())  # type: ignore[arg-type]


def test_a_row_without_negatives_stays_the_plain_list_it_always_was() -> None:
    table: dict[bytes, Any] = {b"u": ["a"]}
    before, after, excluded, acts = _side(table).merge_histories(
        [Interaction("u", "b", "view", T0), Interaction("v", "a", "view", T0)]
    )
    assert before == {"u": ["a"], "v": []} and after == {"u": ["a", "b"], "v": ["a"]}
    assert excluded == acts == {} and table == {b"u": ["a", "b"], b"v": ["a"]}


def test_acts_beyond_a_view_join_the_row_for_the_reasons_and_replay_to_the_same() -> None:
    table: dict[bytes, Any] = {b"u": ["a"]}
    side = _side(table)
    batch = [
        Interaction("u", "b", "rating", T0 + 1, 5.0),
        Interaction("u", "c", "add_to_cart", T0 + 2),
        Interaction("u", "d", "purchase", T0 + 3),
        Interaction("u", "d", "view", T0 + 4),  # her newest act on d is a view again
    ]
    _, after, _, acts = side.merge_histories(batch)
    assert after == {"u": ["a", "b", "c", "d"]}
    assert acts == {"u": {"b": "rating:5", "c": "add_to_cart"}}
    assert table[b"u"] == {"items": ["a", "b", "c", "d"], "acts": acts["u"]}
    stored = dict(table)
    assert side.merge_histories(batch).acts == acts and table == stored  # a replay
    # only the newest ACTS_KEPT items keep theirs: a reason names no older item
    later = [Interaction("u", f"n{k}", "view", T0 + 10 + k) for k in range(ACTS_KEPT - 2)]
    assert side.merge_histories(later).acts == {"u": {"c": "add_to_cart"}}


def test_negative_events_go_to_the_exclusions_of_the_same_row_and_replay_to_the_same() -> None:
    table: dict[bytes, Any] = {b"u": ["a"]}
    side = _side(table, negative_rating_below="3")
    batch = [
        Interaction("u", "x", "dislike", T0 + 1),
        Interaction("u", "b", "view", T0 + 2),
        Interaction("u", "y", "skip", T0 + 3),
        Interaction("u", "z", "rating", T0 + 4, 2.0),
        Interaction("u", "c", "rating", T0 + 5, 3.0),
    ]
    before, after, excluded, _ = side.merge_histories(batch)
    assert before == {"u": ["a"]} and after == {"u": ["a", "b", "c"]}
    assert excluded == {"u": ["x", "y", "z"]}
    row = {"items": ["a", "b", "c"], "excluded": ["x", "y", "z"], "acts": {"c": "rating:3"}}
    assert table[b"u"] == row
    assert UserRow.stored(table[b"u"]) == UserRow(["a", "b", "c"], ["x", "y", "z"], row["acts"])
    stored = dict(table)
    _, again, excluded_again, _ = side.merge_histories(batch)  # a replay after a restart
    assert table == stored and again == after and excluded_again == excluded
    _, later, still, _ = side.merge_histories([Interaction("u", "d", "view", T0 + 9)])
    assert later == {"u": ["a", "b", "c", "d"]} and still == {"u": ["x", "y", "z"]}


def test_batch_deltas_never_pair_a_negative_event() -> None:
    positives = [Interaction("u", "b", "view", T0 + 1), Interaction("u", "c", "view", T0 + 3)]
    mixed = [*positives, Interaction("u", "x", "dislike", T0 + 2)]
    mixed.append(Interaction("u", "y", "rating", T0 + 4, 1.0))
    rules = Feedback(negative_rating_below=3.0)
    plain = batch_deltas(SortedBatch(positives, [], [0, 0], [(0, 1), (0, 2)]), {"u": ["a"]})
    fed = batch_deltas(
        SortedBatch(mixed, [], [0] * 4, [(0, 1), (0, 2), (0, 3), (0, 4)]), {"u": ["a"]}, rules
    )
    assert sorted(fed) == sorted(plain) == [("a", 0), ("b", 0), ("c", 0)]
    for key, delta in plain.items():
        assert (fed[key].norm, fed[key].pairs, fed[key].succ) == (
            delta.norm,
            delta.pairs,
            delta.succ,
        )
        assert fed[key].src == (0, 4)  # the partition's last offset, negative events included


def test_live_path_adds_no_trending_weight_and_serves_no_excluded_item() -> None:
    cache = MemoryCache()
    path = LivePath(
        cache, TrendingScorer(), top_n=5, half_life_s=3600.0, rec_ttl_s=60, history_len=10
    )
    first = [Interaction("v", i, "purchase", T0) for i in ("a", "b", "c")]
    path.process(first, {"v": ["a", "b", "c"]}, hwm=("events", [(0, 0), (0, 1), (0, 2)]))
    trending = cache.top_trending(10, 3600.0, T0)
    negatives = [Interaction("u", "a", "dislike", T0 + 1), Interaction("u", "zz", "skip", T0 + 1)]
    path.process(
        negatives, {"u": []}, hwm=("events", [(0, 3), (0, 4)]), excluded={"u": ["a", "zz"]}
    )
    assert cache.top_trending(10, 3600.0, T0) == trending  # not even "zz" at 0
    served = cache.get_recs("u")
    assert served is not None and [r.item_id for r in served.items] == ["b", "c"]
