"""The catalog at the read API: titles and categories on served items, hidden items dropped
from every list it serves (topped up from the rest), one catalog read per request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient as AioClient

from models.catalog import ItemRecord

Call = Callable[..., Any]


async def get_json(client: AioClient, path: str) -> tuple[int, Any]:
    resp = await client.get(path)
    return resp.status, await resp.json()


def test_cached_items_carry_title_and_categories_when_the_catalog_knows_them(store, call):
    store.meta = {"i0": ItemRecord("i0", "Star Wars (1977)", ("Action", "Sci-Fi"), {"y": 1})}
    status, body = call(store, lambda c: get_json(c, "/recommendations/u1?n=2"))
    assert status == 200
    first, second = body["items"]
    assert first == {
        "item_id": "i0",
        "score": 1.0,
        "reason": "people like you",
        "title": "Star Wars (1977)",
        "categories": ["Action", "Sci-Fi"],
    }
    assert set(second) == {"item_id", "score", "reason"}  # unknown to the catalog: as before
    # one read for the whole cached list (the ids the top-up may need), not one per item
    assert store.catalog_reads == [[f"i{j}" for j in range(20)]]


def test_hidden_items_are_dropped_and_the_rest_of_the_list_tops_up(store, call):
    store.hidden = {"i1", "i3"}
    status, body = call(store, lambda c: get_json(c, "/recommendations/u1?n=4"))
    assert status == 200
    assert [i["item_id"] for i in body["items"]] == ["i0", "i2", "i4", "i5"]
    store.hidden = {f"i{j}" for j in range(18)}  # fewer left than asked: what is left
    _, body = call(store, lambda c: get_json(c, "/recommendations/u1?n=5"))
    assert [i["item_id"] for i in body["items"]] == ["i18", "i19"]


def test_trending_for_unknown_users_drops_hidden_items_and_is_described(store, call):
    store.hidden = {"t1"}
    store.meta = {"t2": ItemRecord("t2", "Two", ("c",))}
    status, body = call(store, lambda c: get_json(c, "/recommendations/nobody?n=2"))
    assert status == 200 and body["source"] == "trending"
    assert [(i["item_id"], i.get("title")) for i in body["items"]] == [("t2", "Two"), ("t3", None)]


def test_similar_drops_hidden_neighbours_and_describes_the_rest(store, call):
    store.neighbours = {"i1": [("i2", 0.9), ("i3", 0.5), ("i4", 0.25)]}
    store.hidden = {"i2"}
    store.meta = {"i3": ItemRecord("i3", "Three", ("x", "y"))}
    status, body = call(store, lambda c: get_json(c, "/similar/i1?n=1"))
    assert status == 200
    assert body == {
        "item_id": "i1",
        "items": [{"item_id": "i3", "score": 0.5, "title": "Three", "categories": ["x", "y"]}],
    }
    assert store.catalog_reads == [["i2", "i3", "i4"]]


def test_a_reason_names_the_history_item_by_its_title_read_with_the_list(store, call):
    """The worker stores reasons with ids; the API puts in the title from the same read."""
    from dataclasses import replace

    from stream_app.cache.base import Recommendation

    cached = store.recs["u1"]
    items = (
        Recommendation("i0", 0.9, "because you viewed h1"),
        Recommendation("i1", 0.8, "often next after h3"),  # h3: no catalog record
        Recommendation("i2", 0.7, "trending now"),
    )
    store.recs["u1"] = replace(cached, recs=replace(cached.recs, items=items))
    store.meta = {"h1": ItemRecord("h1", "Casablanca (1942)", ("Drama",))}
    status, body = call(store, lambda c: get_json(c, "/recommendations/u1?n=3"))
    assert status == 200
    assert [(i["reason"], i.get("because_item_id")) for i in body["items"]] == [
        ("because you viewed Casablanca (1942)", "h1"),
        ("often next after h3", "h3"),
        ("trending now", None),
    ]
    assert store.catalog_reads == [["i0", "i1", "i2", "h1", "h3"]]  # still one read
