"""The read-time filters of ``GET /recommendations/{user}`` over the fake store: ``exclude=``,
``category=``, the user's recent items, the fill from trending within the asked categories,
the empty answer that says why, and the event contract's id rule at every path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient as AioClient

from models.catalog import ItemRecord
from stream_app.api.filters import FILL_DEPTH, MAX_EXCLUDE
from stream_app.api.server import HIDDEN_TOP_UP, UNKNOWN_USER_REASON

Call = Callable[..., Any]


async def get_json(client: AioClient, path: str) -> tuple[int, Any]:
    resp = await client.get(path)
    return resp.status, await resp.json()


def served(call: Call, store: Any, path: str) -> list[tuple[str, str]]:
    """(item_id, reason) of a 200 answer's items."""
    status, body = call(store, lambda c: get_json(c, path))
    assert status == 200, body
    return [(i["item_id"], i["reason"]) for i in body["items"]]


def records(categories: dict[str, tuple[str, ...]]) -> dict[str, ItemRecord]:
    return {i: ItemRecord(i, i.upper(), cats) for i, cats in categories.items()}


def test_exclude_takes_a_list_and_repeats_and_the_list_tops_up(store: Any, call: Call) -> None:
    got = served(call, store, "/recommendations/u1?n=3&exclude=i0,i2&exclude=i3")
    assert [i for i, _ in got] == ["i1", "i4", "i5"]
    assert store.trending_reads == []  # enough left in the list: no trending read


def test_exclude_is_bounded_and_each_id_follows_the_contract(store: Any, call: Call) -> None:
    at_limit = ",".join(f"i{j}" for j in range(MAX_EXCLUDE))
    got = served(call, store, f"/recommendations/u1?n=1&exclude={at_limit}")
    assert got == [("t1", "trending now")]  # the whole list excluded: filled from trending
    cases = {
        at_limit + ",x": f"exclude holds at most {MAX_EXCLUDE} item ids, got {MAX_EXCLUDE + 1}",
        "i1,,i2": "exclude id must be a non-empty string or integer",
        "i1,%20": "exclude id must be a non-empty string or integer",
        "x" * 257: "exclude id longer than 256 characters",
    }
    for value, detail in cases.items():
        path = f"/recommendations/u1?exclude={value}"
        status, body = call(store, lambda c, p=path: get_json(c, p))
        assert (status, body) == (400, {"error": "bad_request", "detail": detail})
    # an empty parameter is no filter, as a template with nothing to exclude sends it
    assert [i for i, _ in served(call, store, "/recommendations/u1?n=2&exclude=")] == ["i0", "i1"]


def test_category_serves_only_items_of_any_asked_category(store: Any, call: Call) -> None:
    store.meta = records({"i1": ("Comedy",), "i3": ("War", "Drama"), "i4": ("Drama",)})
    store.meta["i5"] = ItemRecord("i5", "I5", ("Comedy", "War"))
    got = served(call, store, "/recommendations/u1?n=3&category=Comedy,War")
    assert [i for i, _ in got] == ["i1", "i3", "i5"]  # i4 is Drama only; i0, i2 unknown
    got = served(call, store, "/recommendations/u1?n=2&category=Drama&category=Comedy")
    assert [i for i, _ in got] == ["i1", "i3"]
    for value, detail in {
        ",".join(f"c{j}" for j in range(65)): "category holds at most 64 categories, got 65",
        "Comedy,": "category must be a non-empty string",
        "c" * 257: "category longer than 256 characters",
    }.items():
        path = f"/recommendations/u1?category={value}"
        status, body = call(store, lambda c, p=path: get_json(c, p))
        assert (status, body["detail"]) == (400, detail)


def test_items_in_the_history_the_list_came_from_are_never_served(store: Any, call: Call) -> None:
    store.recs["u1"] = type(store.recs["u1"])(store.recs["u1"].recs, recent=("h1", "i1", "i3"))
    assert [i for i, _ in served(call, store, "/recommendations/u1?n=3")] == ["i0", "i2", "i4"]


def test_a_short_filtered_list_fills_from_trending_in_the_category(store: Any, call: Call) -> None:
    store.recs["u1"] = type(store.recs["u1"])(store.recs["u1"].recs, recent=("h1", "t4"))
    store.meta = records(
        {"i7": ("Comedy",), "t1": ("Comedy",), "t2": ("Comedy",), "t3": ("Drama",)}
        | {"t4": ("Comedy",), "t5": ("Comedy", "War"), "t6": ("War",), "t7": ("Comedy",)}
    )
    store.hidden = {"t2"}
    store.trending_items = [(f"t{j}", 10.0 - j) for j in range(1, 8)] + [("i7", 1.0)]
    got = served(call, store, "/recommendations/u1?n=4&category=War,Comedy&exclude=t1")
    # i7 from the list; then trending: t1 excluded, t2 hidden, t3 Drama, t4 consumed, and i7
    # (trending too) already served
    assert got == [
        ("i7", "people like you"),
        ("t5", "trending in War"),
        ("t6", "trending in War"),
        ("t7", "trending in Comedy"),
    ]
    assert store.trending_reads == [FILL_DEPTH]  # the head and its records: one read
    assert store.catalog_reads == [[f"i{j}" for j in range(20)]]


def test_exclude_alone_fills_from_trending_to_n(store: Any, call: Call) -> None:
    everything = ",".join(f"i{j}" for j in range(20))
    got = served(call, store, f"/recommendations/u1?n=2&exclude={everything},t1")
    assert got == [("t2", "trending now"), ("t3", "trending now")]


def test_no_filter_no_fill_a_list_serves_what_it_holds(store: Any, call: Call) -> None:
    assert len(served(call, store, "/recommendations/u1?n=50")) == 20
    assert store.trending_reads == []


def test_nothing_left_is_an_empty_200_that_says_why(store: Any, call: Call) -> None:
    status, body = call(store, lambda c: get_json(c, "/recommendations/u1?category=Opera"))
    assert status == 200 and body["items"] == [] and body["source"] == "cache"
    assert body["empty_reason"] == (
        "no item of category 'Opera' in the user's list or the 3 most trending items once "
        "hidden, deleted and recently consumed items are left out"
    )
    store.trending_items = []
    _, body = call(store, lambda c: get_json(c, "/recommendations/nobody?exclude=x"))
    assert body["items"] == [] and body["empty_reason"] == (
        "no item in trending (nothing is trending yet) once hidden, deleted and excluded "
        "items are left out"
    )
    _, body = call(store, lambda c: get_json(c, "/recommendations/u1"))
    assert "empty_reason" not in body  # only an empty answer carries one


def test_unknown_users_get_the_filters_on_the_trending_fallback(store: Any, call: Call) -> None:
    store.meta = records({"t1": ("Comedy",), "t3": ("Comedy",)})
    got = served(call, store, "/recommendations/nobody?n=5&category=Comedy&exclude=t1")
    assert got == [("t3", "trending in Comedy (no history for this user yet)")]
    assert store.trending_reads == [FILL_DEPTH] and store.catalog_reads == []
    store.trending_reads.clear()
    got = served(call, store, "/recommendations/nobody?n=2")
    assert got == [("t1", UNKNOWN_USER_REASON), ("t2", UNKNOWN_USER_REASON)]
    assert store.trending_reads == [2 + HIDDEN_TOP_UP]  # unfiltered: a short head is enough


@pytest.mark.parametrize("path", ["/dashboard/item/{}", "/recommendations/{}", "/similar/{}"])
def test_ids_follow_the_event_contract_at_every_path(store: Any, call: Call, path: str) -> None:
    store.neighbours["u1"] = [("i1", 0.5)]

    async def scenario(client: AioClient) -> tuple[tuple[int, Any], int]:
        blank = await get_json(client, path.format(quote("  ")))
        return blank, (await client.get(path.format(quote(" u1 ")))).status

    (status, body), padded = call(store, scenario)
    assert status == 400
    assert body["detail"].endswith("_id must be a non-empty string or integer")
    assert padded == 200  # stripped, as the workers store ids: " u1 " is u1


def test_a_padded_user_id_is_served_as_the_workers_stored_it(store: Any, call: Call) -> None:
    status, body = call(store, lambda c: get_json(c, f"/recommendations/{quote(' u1 ')}?n=1"))
    assert status == 200 and body["user_id"] == "u1" and body["source"] == "cache"
