"""The stream model's content feature and cold candidates (models/online/stream/content.py),
against a dict-spelled oracle, and a metadata-only item reaching a matching user."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from models.catalog import ItemRecord
from models.events import Interaction
from models.online.stream import StreamModel
from models.online.stream.arrays import ListIndex
from models.online.stream.content import LIKE_REASON, ItemContent
from models.online.stream.scoring import (
    FEATURES,
    ScoringParams,
    candidates,
    recommendations,
)

CONTENT = FEATURES.index("content")


def _oracle_cosine(
    history: Sequence[str],
    item: str,
    categories: Mapping[str, Sequence[str]],
    params: ScoringParams,
) -> float:
    """The cosine of the history's decayed category profile and the item's, with dicts."""
    profile: dict[str, float] = {}
    for age, source in enumerate(reversed(history[-params.recent :])):
        cats = set(categories.get(source, ()))
        for cat in cats:
            profile[cat] = profile.get(cat, 0.0) + params.recency_decay**age / math.sqrt(len(cats))
    cats = set(categories.get(item, ()))
    if not cats or not profile:
        return 0.0
    dot = sum(profile.get(cat, 0.0) for cat in cats) / math.sqrt(len(cats))
    return dot / math.sqrt(sum(v * v for v in profile.values()))


def test_the_content_feature_equals_the_oracle_for_a_batch() -> None:
    rng = random.Random(3)
    names = [f"g{k}" for k in range(6)]
    items = [f"i{k}" for k in range(60)]
    categories = {i: rng.sample(names, rng.randint(0, 3)) for i in items}
    content = ItemContent()
    for item, cats in categories.items():
        content.publish(item, cats)
    content.warmed(items)  # no cold candidates: only the feature is under test
    neighbors = {i: [(j, rng.random()) for j in rng.sample(items, 8)] for i in items}
    histories = [rng.sample(items, rng.randint(0, 25)) for _ in range(30)]
    params = ScoringParams()
    index = ListIndex()
    cands = candidates(histories, neighbors, {}, [], index, params, content=content)
    assert cands.size > 500
    for j in range(cands.size):
        row, item = int(cands.rows[j]), index.items[int(cands.ids[j])]
        expected = _oracle_cosine(histories[row], item, categories, params)
        assert math.isclose(cands.features[CONTENT, j], expected, abs_tol=1e-12), (row, item)
    assert np.count_nonzero(cands.features[CONTENT]) > 100


def test_cold_items_reach_the_users_whose_profile_matches() -> None:
    content = ItemContent()
    for item, cats in [("a", ["Drama"]), ("b", ["Drama", "War"]), ("c", ["Comedy"])]:
        content.publish(item, cats)
    content.publish("new-war", ["War"])
    content.publish("new-comedy", ["Comedy"])
    content.publish("hidden-war", ["War"], hidden=True)
    content.warmed(["a", "b", "c"])
    index = ListIndex()
    histories = [["a", "b"], ["c"], ["nothing-known"]]
    cands = candidates(histories, {}, {}, [], index, ScoringParams(), content=content)
    per_row = [
        {index.items[int(i)] for i, r in zip(cands.ids, cands.rows, strict=True) if r == row}
        for row in range(3)
    ]
    assert per_row == [{"new-war"}, {"new-comedy"}, set()]
    weights = np.zeros((3, len(FEATURES)))
    weights[:, CONTENT] = 1.0
    recs = recommendations(cands, histories, weights, [], 3, index)
    assert [(r.item_id, r.reason) for r in recs[0]] == [("new-war", f"{LIKE_REASON}War")]


def test_the_pool_keeps_the_newest_and_forgets_warm_deleted_and_hidden_items() -> None:
    content = ItemContent(pool_size=2)
    for k in range(4):
        content.publish(f"n{k}", ["x"])
    index = ListIndex()
    pool = content.pool(index)
    assert [index.items[i] for i in pool.ids] == ["n2", "n3"]
    content.warmed(["n3"])
    assert pool.alive.tolist() == [True, False]  # masked, not rebuilt
    content.delete("n2")
    content.publish("n1", ["x"], hidden=True)
    pool = content.pool(index)
    assert [index.items[i] for i in pool.ids[pool.alive]] == ["n0"]
    content.publish("n3", ["x", "y"])  # a newer record of a warm item: still warm
    assert list(content.cold) == ["n0"] and content.names_of("n3") == ["x", "y"]


def test_a_changed_record_changes_the_feature_of_an_item_already_indexed() -> None:
    content = ItemContent()
    content.publish("a", ["x"])
    content.publish("b", ["x"])
    content.warmed(["a", "b"])
    index = ListIndex()
    neighbors = {"a": [("b", 1.0)]}
    first = candidates([["a"]], neighbors, {}, [], index, content=content)
    assert first.features[CONTENT].tolist() == [1.0]
    content.publish("b", ["y"])
    second = candidates([["a"]], neighbors, {}, [], index, content=content)
    assert second.features[CONTENT].tolist() == [0.0]


def test_the_stream_model_recommends_a_metadata_only_item_to_a_matching_user() -> None:
    catalog = [ItemRecord(f"d{k}", f"Drama {k}", ("Drama",)) for k in range(5)]
    catalog += [ItemRecord(f"c{k}", f"Comedy {k}", ("Comedy",)) for k in range(5)]
    catalog += [ItemRecord("fresh-drama", "Fresh", ("Drama",))]
    model = StreamModel(partitions=1, catalog=catalog)
    t = 1_700_000_000_000
    events = [(f"u{n % 7}", f"d{n % 5}" if n % 2 else f"c{n % 5}") for n in range(300)]
    for n, (user, item) in enumerate(events):
        model.learn_one(Interaction(user, item, "view", t + n))
    drama_fan = "drama-fan"
    for n, item in enumerate(["d0", "d1", "d2"]):
        model.learn_one(Interaction(drama_fan, item, "view", t + 1_000 + n))
    recs = model.recommend(drama_fan, k=20)
    by_item = {r.item_id: r.reason for r in recs}
    assert by_item.get("fresh-drama") is not None, recs
    assert "fresh-drama" in model.scorer.content.cold  # no event on it: still cold


def test_the_cold_slot_puts_the_closest_unseen_cold_item_in_its_place() -> None:
    content = ItemContent()
    for item in ["a", "w1", "w2", "w3"]:
        content.publish(item, ["Drama"])
    content.warmed(["a", "w1", "w2", "w3"])
    content.publish("seen-cold", ["Drama"])  # cold, but in her history: never placed
    content.publish("new", ["Drama"])
    index = ListIndex()
    history = [["seen-cold", "a"]]
    neighbors = {"a": [("w1", 0.9), ("w2", 0.5), ("w3", 0.2)]}
    cands = candidates(history, neighbors, {}, [], index, content=content)
    weights = np.array([[1.0, 0, 0, 0, 0, 0.01]])
    plain = recommendations(cands, history, weights, [], 3, index)[0]
    assert [r.item_id for r in plain] == ["w1", "w2", "w3"]
    slotted = recommendations(cands, history, weights, [], 3, index, cold_slot=1)[0]
    assert [r.item_id for r in slotted] == ["w1", "new", "w2"]
    assert slotted[1].reason == f"{LIKE_REASON}Drama"
    assert slotted[0].score > slotted[1].score > slotted[2].score


def _oracle_cold(
    history: Sequence[str],
    pool: Sequence[str],
    categories: Mapping[str, Sequence[str]],
    params: ScoringParams,
) -> list[str]:
    """A row's cold items by brute force: every pool item's cosine with the profile, best
    first, the newest published (later in ``pool``) first on a tie, zeros left out."""
    scored = [
        (_oracle_cosine(history, item, categories, params), at, item)
        for at, item in enumerate(pool)
    ]
    scored = [s for s in scored if s[0] > 1e-12]
    scored.sort(key=lambda s: (-round(s[0], 9), -s[1]))
    return [item for _, _, item in scored[: params.cold_candidates]]


def test_cold_candidates_by_signature_equal_one_cosine_per_pool_item() -> None:
    """Few categories, so many items share a category set and many cosines tie: the
    per-signature selection must pick exactly the items a per-item scan picks."""
    rng = random.Random(3)
    genres = ["g0", "g1", "g2", "g3", "g4"]
    categories = {f"i{k}": rng.sample(genres, rng.randint(1, 3)) for k in range(300)}
    content = ItemContent()
    for item, cats in categories.items():
        content.publish(item, cats)
    index = ListIndex()
    content.pool(index)
    content.warmed([f"i{k}" for k in range(0, 300, 7)])  # some masked
    pool = [item for item in categories if item in content.cold]
    histories = [[f"i{k}" for k in rng.sample(range(300), rng.randint(1, 6))] for _ in range(40)]
    params = ScoringParams()
    cands = candidates(histories, {}, {}, [], index, params, content=content)
    for row, history in enumerate(histories):
        start, end = cands.bounds[row], cands.bounds[row + 1]
        got = {index.items[i] for i in cands.ids[start:end]}
        expected = set(_oracle_cold(history, pool, categories, params))
        assert got == expected - set(history), (row, history)


@pytest.mark.parametrize("older, newer", [("a", "b"), ("b", "a")])
def test_a_tie_between_category_sets_goes_to_the_newest_item(older: str, newer: str) -> None:
    """{a} and {b} score the same for a profile of {a, b}: the newest of their items wins the
    last place, whichever set it has and in whatever order the sets were met."""
    content = ItemContent()
    content.publish("seen", ["a", "b"])
    content.publish("ab", ["a", "b"])
    content.publish("new", [older])
    content.publish("newer", [newer])
    content.warmed(["seen"])
    index = ListIndex()
    params = ScoringParams(cold_candidates=2)
    cands = candidates([["seen"]], {}, {}, [], index, params, content=content)
    assert sorted(index.items[i] for i in cands.ids) == ["ab", "newer"]
