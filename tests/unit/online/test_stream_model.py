"""The two-sided topology's pure parts: deltas, item rows, neighbours, scoring, session blend."""

from __future__ import annotations

import math

import pytest

from models.events import Interaction
from models.online.recommender import OnlineRecommender
from stream_app.agents import SortedBatch, batch_deltas
from stream_app.cache import MemoryCache
from stream_app.live_path import LivePath
from stream_app.session_blend import CF_VERSION, OnlineScorer
from stream_app.topology import (
    SESSION_REASON,
    ItemDelta,
    apply_delta,
    deltas_by_item,
    neighbor_list,
    score_user,
    score_users,
    successor_list,
    transitions,
    user_side_batch,
)

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


def test_stream_cosine_matches_the_online_models_item_similarity():
    events = [("a", "x"), ("a", "y"), ("b", "x"), ("b", "z"), ("c", "y"), ("c", "x")]
    rows = _rows_from(events)
    norms = {item: row["n"] for item, row in rows.items()}
    rec = OnlineRecommender(window=10, reranker=None, content=False)
    for n, (user, item) in enumerate(events):
        rec.learn_one(Interaction(user, item, "view", T0 + n))
    reference = rec.similarity
    for item in ("x", "y", "z"):
        ours = dict(neighbor_list(rows[item], norms[item], norms, m=10))
        for other, sim in ours.items():
            assert math.isclose(sim, reference.similarity(item, other), rel_tol=1e-9)


def test_a_resent_delta_is_not_applied_twice():
    delta = ItemDelta(1.0, {"b": 2.0}, (3, 100))
    once = apply_delta(None, delta, max_pairs=10)
    assert apply_delta(once, delta, max_pairs=10) == once
    later = apply_delta(once, ItemDelta(1.0, {"b": 1.0}, (3, 101)), max_pairs=10)
    assert later["p"] == {"b": 3.0} and later["n"] == 2.0
    other_partition = apply_delta(later, ItemDelta(1.0, {}, (1, 5)), max_pairs=10)
    assert other_partition["n"] == 3.0


def test_rows_keep_only_their_heaviest_pairs():
    # max_pairs=2 allows 3 entries (the slack); a 4th cuts the row back to the 2 heaviest.
    row = apply_delta(None, ItemDelta(1.0, {"a": 1.0, "b": 3.0, "c": 2.0}), max_pairs=2)
    assert row["p"] == {"a": 1.0, "b": 3.0, "c": 2.0}
    row = apply_delta(row, ItemDelta(0.0, {"d": 2.5}), max_pairs=2)
    assert row["p"] == {"b": 3.0, "d": 2.5}


def test_batch_deltas_group_by_source_partition_and_skip_replayed_events():
    events = [Interaction("u", "a", "view", T0), Interaction("u", "b", "view", T0 + 1)]
    batch = SortedBatch(events, [], [T0, T0 + 1], [(2, 10), (2, 11)])
    fresh = batch.fresh({2: 10})
    assert [e.item_id for e in fresh.valid] == ["b"] and fresh.last_offsets() == {2: 11}
    deltas = batch_deltas(fresh, {"u": ["a"]})
    assert deltas[("b", 2)].pairs == {"a": 1.0} and deltas[("b", 2)].src == (2, 11)
    assert deltas[("a", 2)].norm == 0.0 and deltas[("a", 2)].pairs == {"b": 1.0}


def test_score_user_excludes_seen_and_names_the_strongest_recent_item():
    neighbors = {"a": [("x", 0.2), ("y", 0.9)], "b": [("x", 0.5), ("a", 0.9)]}
    recs = score_user(["a", "b"], neighbors, [("t", 1.0), ("x", 0.5)], n=3, recency_decay=0.5)
    assert [r.item_id for r in recs] == ["x", "y", "t"]
    assert recs[0].reason == "because you viewed b"  # 0.5 (b, newest) > 0.5 * 0.2 (a)
    assert recs[1].reason == "because you viewed a"
    assert recs[2].reason == "trending now"


class _FakeSession:
    version = "s-v1"

    def __init__(self):
        self.calls = []

    def recommend(self, prefixes, k, exclude=None):
        self.calls.append((prefixes, k, exclude))
        return [[("s1", 0.9), ("a", 0.8)] for _ in prefixes]


class _Slot:
    def __init__(self, model):
        self.model = model
        self.version = model.version

    def current(self):
        return self.model


def test_online_scorer_blends_the_session_model_and_reports_its_version():
    cache = MemoryCache()
    cache.publish_neighbors({"a": [("x", 0.9)]}, {"a": 1.0, "x": 1.0})
    model = _FakeSession()
    scorer = OnlineScorer(cache, _Slot(model), session_slots=2)
    recs = scorer.recommend_batch({"u": ["a"]}, [("t", 2.0)], n=3)["u"]
    assert [(r.item_id, r.reason) for r in recs] == [
        ("x", "because you viewed a"),
        ("s1", SESSION_REASON),
        ("t", "trending now"),
    ]
    assert dict(scorer.versions) == {"cf": CF_VERSION, "session": "s-v1"}
    assert model.calls == [([["a"]], 2, [["a"]])]  # seen items excluded by the model too


def test_a_failing_session_model_leaves_the_cf_list():
    class Broken(_FakeSession):
        def recommend(self, prefixes, k, exclude=None):
            raise RuntimeError("boom")

    scorer = OnlineScorer(MemoryCache(), _Slot(Broken()))
    recs = scorer.recommend_batch({"u": ["a"]}, [("t", 2.0)], n=2)["u"]
    assert [r.item_id for r in recs] == ["t"] and "session" not in scorer.versions


def test_counters_move_with_the_high_water_marks():
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


def test_stream_transitions_match_the_online_models_transitions():
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


def test_score_user_blends_scaled_knn_and_transitions():
    # knn alone would rank x first; the last item's strong transition to y outweighs
    # a weak neighbour once both sources are scaled to max 1 (1.0 * 0.2 vs 0.3 * 1.0).
    neighbors = {"a": [("x", 0.9), ("y", 0.18)]}
    successors = {"a": [("y", 0.9), ("x", 0.1)]}
    recs = score_user(["a"], neighbors, [], n=2, successors=successors)
    assert [(r.item_id, r.reason) for r in recs] == [
        ("x", "because you viewed a"),
        ("y", "often next after a"),
    ]
    assert recs[0].score == pytest.approx(1.0 + 0.3 * 0.1 / 0.9)
    assert recs[1].score == pytest.approx(0.2 + 0.3)


def test_score_user_equals_the_blend_definition_on_random_lists():
    import random

    from stream_app.topology import ListIndex

    rng = random.Random(3)
    items = [f"i{k}" for k in range(60)]
    index = ListIndex()
    for _ in range(30):
        neighbors = {a: [(b, rng.random()) for b in rng.sample(items, 15)] for a in items}
        successors = {a: [(b, rng.random()) for b in rng.sample(items, 5)] for a in items}
        history = rng.sample(items, rng.randint(1, 25))
        ranked = [
            (item, score)
            for item, score, _ in _reference_blend(history, neighbors, successors, [], 10, 20, 0.9)
        ]
        recs = score_user(history, neighbors, [], 10, successors=successors, index=index)
        assert [r.item_id for r in recs] == [item for item, _ in ranked]
        assert [r.score for r in recs] == pytest.approx([score for _, score in ranked])
        assert not {r.item_id for r in recs} & set(history)


def _reference_blend(history, neighbors, successors, trending, n, recent, decay):
    """score_user's lists spelled out with dicts: sums, scaling, ties by item, reasons, fill."""
    seen = set(history)
    knn: dict[str, float] = {}
    strongest: dict[str, tuple[float, int, str]] = {}  # item -> (-weight, age order, source)
    position = 0
    for age, source in enumerate(reversed(history[-recent:])):
        lst = neighbors.get(source)
        if not lst:
            continue
        for other, sim in lst:
            weight = sim * decay**age
            knn[other] = knn.get(other, 0.0) + weight
            strongest[other] = min(
                strongest.get(other, (math.inf, 0, "")), (-weight, position, source)
            )
        position += 1
    last = history[-1] if history else None
    markov: dict[str, float] = {}
    for other, p in (successors.get(last) or ()) if last else ():
        markov[other] = markov.get(other, 0.0) + p
    knn = {k: v for k, v in knn.items() if k not in seen}
    markov = {k: v for k, v in markov.items() if k not in seen}
    top_knn, top_markov = max(knn.values(), default=0.0), max(markov.values(), default=0.0)
    scale_knn = 1.0 / top_knn if top_knn > 0 else 1.0
    scale_markov = 0.3 / top_markov if top_markov > 0 else 1.0
    scored = []
    for item in set(knn) | set(markov):
        from_knn = knn[item] * scale_knn if item in knn else 0.0
        from_markov = markov[item] * scale_markov if item in markov else 0.0
        if item in knn and from_knn >= from_markov:
            reason = f"because you viewed {strongest[item][2]}"
        else:
            reason = f"often next after {last}"
        scored.append((-(from_knn + from_markov), item, reason))
    out = [(item, -negative, reason) for negative, item, reason in sorted(scored)[:n]]
    taken = seen | {item for item, _, _ in out}
    for item, score in trending:
        if len(out) < n and item not in taken:
            out.append((item, score, "trending now"))
            taken.add(item)
    return out


@pytest.mark.parametrize("dense", [True, False])
def test_score_users_equals_a_dict_reference_and_score_user_per_user(monkeypatch, dense):
    import random

    from stream_app import topology

    # both ways of grouping the batch's (user, item) keys: a flag per key, or a sort
    monkeypatch.setattr(topology, "DENSE_KEYS_PER_ENTRY", 10**9 if dense else 0)
    rng = random.Random(11)
    items = [f"{rng.choice('abc')}{k}" for k in range(40)]  # string order != id order
    for _ in range(25):
        weight = (lambda: rng.choice([0.25, 0.5, 1.0])) if rng.random() < 0.5 else rng.random
        # duplicates within and across lists; some items have no list, some an empty one
        neighbors = {
            a: [(rng.choice(items), weight()) for _ in range(rng.randint(0, 12))]
            for a in rng.sample(items, 30)
        }
        successors = {
            a: [(rng.choice(items), weight()) for _ in range(rng.randint(0, 5))]
            for a in rng.sample(items, 25)
        }
        histories = {
            f"u{k}": [rng.choice(items) for _ in range(rng.choice([0, 1, 2, 5, 30]))]
            for k in range(12)
        }
        histories["cold"] = []
        histories["unlisted"] = ["zz-no-list"]
        trending = [(rng.choice([*items, "zz-no-list"]), float(k)) for k in range(8, 0, -1)]
        n, recent = rng.choice([1, 3, 10, 60]), rng.choice([3, 20])
        index = topology.ListIndex()
        got = score_users(
            histories, neighbors, trending, n, successors=successors, recent=recent, index=index
        )
        assert list(got) == list(histories)
        for user, history in histories.items():
            recs = [(r.item_id, r.score, r.reason) for r in got[user]]
            expected = _reference_blend(history, neighbors, successors, trending, n, recent, 0.9)
            assert recs == expected  # exact: the same float operations in the same order
            alone = score_user(
                history, neighbors, trending, n, successors=successors, recent=recent, index=index
            )
            assert [(r.item_id, r.score, r.reason) for r in alone] == recs
        assert [r.reason for r in got["cold"]] == ["trending now"] * len(got["cold"])
