"""The e-commerce stream has what it promises: one stream per seed, repeat views within
sessions, categories, and a view -> cart -> purchase funnel in that order."""

from __future__ import annotations

from collections import defaultdict

import pytest

from models.datasets import EventDataset, load_dataset
from models.datasets import movielens as movielens_module
from models.datasets.base import chronological_key
from models.datasets.ecommerce import EcommerceConfig, generate_ecommerce
from models.events import Interaction

SMALL = EcommerceConfig().resized(6000)


@pytest.fixture(scope="module")
def shop() -> EventDataset:
    return generate_ecommerce(SMALL)


def test_same_seed_same_stream_and_another_seed_another(shop: EventDataset) -> None:
    assert generate_ecommerce(SMALL).events == shop.events
    other = generate_ecommerce(EcommerceConfig(seed=12).resized(6000))
    assert other.events != shop.events


def test_the_registry_serves_it_sized(shop: EventDataset) -> None:
    assert load_dataset("ecommerce", synthetic_events=6000).events == shop.events


def test_stream_order_and_size(shop: EventDataset) -> None:
    assert len(shop.events) == 6000
    assert shop.events == sorted(shop.events, key=chronological_key)


def test_items_are_viewed_again_within_sessions(shop: EventDataset) -> None:
    seen: dict[str, set[str]] = defaultdict(set)
    views = repeats = 0
    for event in shop.events:
        if event.event_type == "view":
            views += 1
            repeats += event.item_id in seen[event.session_id]
            seen[event.session_id].add(event.item_id)
    assert 0.15 < repeats / views < 0.45


def _session_events(shop: EventDataset) -> dict[str, list[Interaction]]:
    sessions: dict[str, list[Interaction]] = defaultdict(list)
    for event in shop.events:
        sessions[str(event.session_id)].append(event)
    return sessions


def test_the_funnel_runs_view_then_cart_then_purchase(shop: EventDataset) -> None:
    kinds = defaultdict(int)
    for events in _session_events(shop).values():
        done: dict[str, set[str]] = defaultdict(set)
        for event in events:
            kinds[event.event_type] += 1
            before = {"add_to_cart": "view", "purchase": "add_to_cart"}.get(event.event_type)
            assert before is None or event.item_id in done[before], (event, before)
            done[event.event_type].add(event.item_id)
    assert kinds["view"] > kinds["add_to_cart"] > kinds["purchase"] > 0


def test_sessions_stay_mostly_in_one_category(shop: EventDataset) -> None:
    category = {r.item_id: r.categories[0] for r in shop.catalog}
    assert all(category[i] == f"cat{c}" for i, c in shop.planted.item_category.items())
    same = total = 0
    for events in _session_events(shop).values():
        first = category[events[0].item_id]
        same += sum(category[e.item_id] == first for e in events)
        total += len(events)
    assert same / total > 0.8
    for item, similar in shop.planted.similar.items():
        assert {category[s] for s in similar} == {category[item]}


def test_movielens_positive_keeps_ratings_of_four_and_five(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ratings = [Interaction("u", str(n), "rating", 10**12 + n, float(n)) for n in range(1, 6)]
    full = EventDataset("movielens100k", ratings)
    monkeypatch.setattr(movielens_module, "load_movielens100k", lambda cache_dir=None: full)
    liked = movielens_module.load_movielens100k_positive()
    assert liked.name == "movielens100k-positive"
    assert [e.value for e in liked.events] == [4.0, 5.0]
