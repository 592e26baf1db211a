"""One contract, every ``RecCache`` backend: the Redis backend must behave like the reference,
on one Redis and on a Redis Cluster (``infra/redis_cluster.sh``, started if it is not up).

Marked integration as a whole because the Redis cases need the real Redis; the memory case runs
alongside them as the reference the contract was written against.
"""

from __future__ import annotations

import pytest

from models.catalog import ItemRecord
from stream_app.cache import CacheKeys, MemoryCache, RecCache, Recommendation, UserRecs
from stream_app.cache.redis_backend import RedisCache

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000
HOUR_MS = 3_600_000


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
def cache(request) -> RecCache:
    if request.param == "memory":
        backend: RecCache = MemoryCache()
    elif request.param == "redis":
        backend = RedisCache(request.getfixturevalue("redis_db"), CacheKeys("contract:v1"))
    else:
        keys = request.getfixturevalue("cluster_keys")
        backend = RedisCache(request.getfixturevalue("redis_cluster"), keys)
    yield backend
    backend.close()


def _keys(cache: RecCache) -> CacheKeys:
    """The backend's key names (the memory backend has none of its own: any names do)."""
    return cache.keys if isinstance(cache, RedisCache) else CacheKeys("contract:v1")


def test_empty_cache_has_no_trending_recs_or_counts(cache):
    assert cache.top_trending(5, 3600.0, T0) == []
    assert cache.get_recs("nobody") is None
    assert set(cache.get_stats().values()) == {0}


def test_trending_is_decayed_popularity_best_first(cache):
    weights = [("a", 1.0, T0)] * 4 + [("b", 1.0, T0 + 2 * HOUR_MS)] * 2 + [("c", 5.0, T0)]
    top = cache.update_trending(weights, 3600.0, T0 + 2 * HOUR_MS, 10)
    assert [item for item, _ in top] == ["b", "c", "a"]
    assert dict(top) == pytest.approx({"b": 2.0, "c": 1.25, "a": 1.0})
    assert cache.top_trending(2, 3600.0, T0 + 2 * HOUR_MS) == top[:2]


def test_trending_accumulates_across_batches_and_rescales(cache):
    cache.update_trending([("a", 1.0, T0)], 3600.0, T0, 5)
    cache.update_trending([("a", 1.0, T0 + HOUR_MS)], 3600.0, T0 + HOUR_MS, 5)
    assert dict(cache.top_trending(5, 3600.0, T0 + HOUR_MS)) == pytest.approx({"a": 1.5})
    far = T0 + 100 * HOUR_MS  # beyond the 2**40 bound: epoch moves, scores rescale
    top = dict(cache.update_trending([("b", 1.0, far)], 3600.0, far, 5))
    assert top["b"] == pytest.approx(1.0)
    assert top["a"] == pytest.approx(1.5 * 2.0**-99, rel=1e-6)


def test_recs_round_trip_with_ttl_and_counters_add_up(cache):
    recs = [
        UserRecs("u1", (Recommendation("i1", 0.5, "trending now"),), {"trending": "v1"}, T0),
        UserRecs("u:2", (), {}, T0 + 1),
    ]
    cache.write_batch(recs, ttl_s=60, stats={"events": 3, "dlq": 1})
    cache.write_batch([], ttl_s=60, stats={"events": 2, "batches": 1})
    assert cache.get_recs("u1") == recs[0]
    assert cache.get_recs("u:2") == recs[1]
    assert cache.get_many_items(["u1", "nobody", "u:2"]) == {"u1": ["i1"], "u:2": []}
    assert cache.get_many_items([]) == {}
    stats = cache.get_stats()
    assert (stats["events"], stats["dlq"], stats["batches"]) == (5, 1, 1)


def test_redis_keys_follow_the_documented_schema(redis_db):
    keys = CacheKeys("contract:v1")
    cache = RedisCache(redis_db, keys)
    cache.update_trending([("i1", 1.0, T0)], 3600.0, T0, 5)
    cache.write_batch([UserRecs("u1", ())], ttl_s=30, stats={"events": 1})
    client = cache.client
    assert client.type(keys.trending) == b"zset"
    assert float(client.get(keys.trending_epoch)) == T0
    assert 0 < client.ttl(keys.recs("u1")) <= 30
    assert client.get(keys.stat("events")) == b"1"
    cache.close()


def test_unreachable_redis_is_cache_unavailable_after_retries():
    import socket

    from stream_app.cache import CacheUnavailable

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cache = RedisCache(f"redis://127.0.0.1:{port}/0", retries=2, socket_timeout_s=0.5)
    with pytest.raises(CacheUnavailable, match="after retries"):
        cache.update_trending([("i", 1.0, T0)], 3600.0, T0, 5)
    with pytest.raises(CacheUnavailable):
        cache.write_batch([], 60, {"events": 1})
    cache.close()


def test_replayed_positions_are_counted_once(cache):
    weights = [("a", 1.0, T0), ("b", 2.0, T0)]
    first = [(0, 10), (1, 4)]
    cache.update_trending(weights, 3600.0, T0, 5, hwm=("ev", first), counters={"events": 2})
    # A restart or rebalance hands (0, 10) over again, with one new event (0, 11).
    again = [("a", 1.0, T0), ("c", 3.0, T0)]
    top = cache.update_trending(
        again, 3600.0, T0, 5, hwm=("ev", [(0, 10), (0, 11)]), counters={"events": 2}
    )
    assert dict(top) == {"a": 1.0, "b": 2.0, "c": 3.0}
    assert cache.read_hwm("ev") == {0: 11, 1: 4}
    assert cache.get_stats()["events"] == 3


def test_count_once_counts_each_position_once_under_its_own_marks(cache):
    assert cache.count_once("dlq", "ev:dead", [(0, 3), (1, 9)]) == 2
    assert cache.count_once("dlq", "ev:dead", [(0, 3), (0, 4), (1, -1)]) == 2  # 3 seen; -1 kept
    assert cache.count_once("dlq", "ev:dead", []) == 0
    assert cache.read_hwm("ev:dead") == {0: 4, 1: 9}
    assert cache.get_stats()["dlq"] == 4
    assert cache.read_hwm("ev") == {}  # the events' marks are not these


def test_neighbors_and_norms_round_trip(cache):
    cache.publish_neighbors({"a": [("b", 0.5), ("c", 0.25)], "b": []}, {"a": 2.0, "b": 1.0})
    assert cache.get_neighbors(["a", "b", "zz"]) == {"a": [("b", 0.5), ("c", 0.25)], "b": []}
    assert cache.get_norms(["a", "zz"]) == {"a": 2.0}
    # a republished list is read as published, not as the list read before (decode memo)
    cache.publish_neighbors({"a": [("c", 0.75)]}, {}, successors={"a": [("b", 1.0)]})
    assert cache.get_neighbors(["a"]) == {"a": [("c", 0.75)]}
    assert cache.get_successors(["a", "b"]) == {"a": [("b", 1.0)]}


def test_journals_keep_the_newest_entries_newest_first(cache):
    key = _keys(cache).dead_letters
    cache.append_journal(key, [b"1", b"2"], keep=3)
    cache.append_journal(key, [b"3", b"4"], keep=3)
    cache.append_journal(key, [], keep=3)
    assert cache.read_journal(key, 10) == [b"4", b"3", b"2"]
    assert cache.read_journal(key, 1) == [b"4"]


def test_counters_written_with_recs_count_replayed_positions_once(cache):
    recs = [UserRecs("u1", (Recommendation("i1", 0.5, "trending now"),), {}, T0)]
    cache.write_batch(recs, 60, {"events": 2, "batches": 1}, hwm=("ev:c", [(0, 1), (0, 2)]))
    cache.write_batch(recs, 60, {"events": 2, "batches": 1}, hwm=("ev:c", [(0, 2), (0, 3)]))
    stats = cache.get_stats()
    assert stats["events"] == 3 and stats["batches"] == 2
    assert cache.read_hwm("ev:c") == {0: 3} and cache.get_recs("u1") == recs[0]


def test_catalog_records_hide_show_and_tombstone(cache):
    star_wars = ItemRecord("50", "Star Wars (1977)", ("Action", "Sci-Fi"), {"year": 1977})
    sold_out = ItemRecord("u:7", "Sold out", ("shop",), {"price": 9.5, "new": True}, hidden=True)
    cache.write_catalog({"50": star_wars, "u:7": sold_out, "gone": None})
    assert cache.get_item_meta(["50", "u:7", "nobody"]) == {"50": star_wars, "u:7": sold_out}
    assert cache.get_item_meta([]) == {}
    assert cache.hidden_items() == {"u:7"}
    assert cache.deleted_items() == {"gone"}
    # a newer record replaces the whole entry: shown again, new title
    shown = ItemRecord("u:7", "Back in stock", ("shop",))
    cache.write_catalog({"u:7": shown, "50": ItemRecord("50", "Star Wars", hidden=True)})
    assert cache.get_item_meta(["u:7"]) == {"u:7": shown}
    assert cache.hidden_items() == {"50"}
    cache.write_catalog({"50": None})  # the tombstone removes its metadata and its hidden mark
    assert cache.get_item_meta(["50", "u:7"]) == {"u:7": shown}
    assert cache.hidden_items() == set()
    assert cache.deleted_items() == {"gone", "50"}  # deleted: never served
    cache.write_catalog({"gone": ItemRecord("gone", "Back")})  # a record brings it back
    assert cache.deleted_items() == {"50"}
    cache.write_catalog({})


def test_catalog_keys_follow_the_documented_schema(redis_db):
    keys = CacheKeys("contract:v1")
    cache = RedisCache(redis_db, keys)
    cache.write_catalog({"a": ItemRecord("a", "A", ("x",), hidden=True), "b": None})
    client = cache.client
    assert client.type(keys.item_meta("a")) == b"string"
    assert client.smembers(keys.hidden_items) == {b"a"}
    assert client.exists(keys.item_meta("b")) == 0
    client.set(keys.item_meta("b"), b"{damaged")  # reads as no metadata, never an error
    assert cache.get_item_meta(["a", "b"]) == {"a": ItemRecord("a", "A", ("x",), hidden=True)}
    cache.write_catalog({"a": None, "b": None})
    assert client.keys("contract:v1:item:*") == []  # the items' own keys are gone
    assert client.smembers(keys.hidden_items) == set()
    assert client.smembers(keys.deleted_items) == {b"a", b"b"}
    cache.close()


def test_refreshed_lists_replace_only_older_cached_lists_of_another_model(cache):
    item = (Recommendation("i1", 0.5, "trending now"),)
    cached = [
        UserRecs("older", item, {"cf": "v", "session": "s1"}, T0),
        UserRecs("later", item, {"cf": "v", "session": "s1"}, T0 + 10),  # after the read
        UserRecs("same", item, {"cf": "v", "session": "s2"}, T0),  # already the new model
        UserRecs("plain", item, {"cf": "v"}, T0),
    ]
    cache.write_batch(cached, ttl_s=60, stats={})
    fresh = (Recommendation("i2", 0.9, "based on your current session"),)
    users = ["older", "later", "same", "plain", "gone"]
    recs = [UserRecs(u, fresh, {"cf": "v", "session": "s2"}, T0 + 20) for u in users]

    assert cache.write_refreshed(recs, ttl_s=60, read_at_ms=T0 + 5) == 2
    assert cache.get_recs("older") == recs[0] and cache.get_recs("plain") == recs[3]
    assert cache.get_recs("later") == cached[1] and cache.get_recs("same") == cached[2]
    assert cache.get_recs("gone") is None  # a refresh never brings a list back
    assert cache.get_stats()["refreshed"] == 2
    assert cache.write_refreshed([], ttl_s=60, read_at_ms=T0) == 0


def test_the_generation_marker_keeps_its_first_token_and_marks_only_under_it(cache):
    assert cache.generation(None) == {}  # read only: nothing created
    assert cache.generation("t1") == {"token": "t1"}
    assert cache.generation("t2") == {"token": "t1"}  # the first worker's token is kept
    assert cache.mark_rebuilt("t1", ["items:0", "users:0"])
    assert not cache.mark_rebuilt("t2", ["items:1"])  # a stale token marks nothing
    assert cache.generation(None) == {"token": "t1", "items:0": "t1", "users:0": "t1"}
    cache.drop_generation()
    assert cache.generation("t3") == {"token": "t3"}
    assert not cache.mark_rebuilt("t1", ["items:0"])


def test_raised_marks_never_go_back_and_trending_seeds_never_add(cache):
    cache.raise_marks("events", {0: 5, 1: 3})
    cache.raise_marks("events", {0: 4, 2: 1})
    assert cache.read_hwm("events") == {0: 5, 1: 3, 2: 1}
    cache.update_trending([("a", 2.0, T0)], 3600.0, T0, 5)
    seeded = cache.update_trending(
        [("a", 9.0, T0), ("b", 1.0, T0)], 3600.0, T0, 5, absent_only=True
    )
    assert dict(seeded) == pytest.approx({"a": 2.0, "b": 1.0})


def test_a_batch_over_many_slots_is_written_and_read_whole(cache):
    # Hundreds of users fall in slots of every master of a cluster: writes and reads are cut
    # by slot there (one script per slot), and must still count and return all of them.
    recs = [UserRecs(f"u{i}", (Recommendation(f"i{i}", 0.5, "trending now"),)) for i in range(300)]
    positions = [(0, i) for i in range(300)]
    cache.write_batch(recs, 60, {"events": 300, "batches": 1}, hwm=("ev:c", positions))
    users = [r.user_id for r in recs]
    assert cache.get_many_items(users) == {f"u{i}": [f"i{i}"] for i in range(300)}
    assert cache.get_stats()["events"] == 300
    cache.publish_neighbors({u: [("x", 0.5)] for u in users}, {})
    assert len(cache.get_neighbors(users)) == 300
    cache.write_catalog({u: ItemRecord(u, u, hidden=u.endswith("7")) for u in users})
    assert len(cache.get_item_meta(users)) == 300 and len(cache.hidden_items()) == 30
    assert cache.forget_users(users[:100], "ctl", [(0, 1)]) == 1
    assert len(cache.get_many_items(users)) == 200 and cache.get_stats()["forgotten"] == 1


def test_cluster_keys_share_one_slot_only_where_a_transaction_needs_them(
    redis_cluster, cluster_keys
):
    from stream_app.cache.slots import slot_of

    keys = cluster_keys
    shared = [keys.trending, keys.trending_epoch, keys.hwm("ev"), keys.stat("events")]
    shared += [keys.ranker(3), keys.dead_letters, keys.generation, keys.hidden_items]
    assert len({slot_of(k) for k in shared}) == 1
    assert len({slot_of(keys.recs(f"u{i}")) for i in range(100)}) > 90  # spread, not tagged
    cache = RedisCache(redis_cluster, keys)
    cache.update_trending([("i1", 1.0, T0)], 3600.0, T0, 5, hwm=("ev", [(0, 1)]))
    cache.write_batch([UserRecs("u1", ())], ttl_s=30, stats={"events": 1})
    client = cache.client
    assert client.type(keys.trending) == b"zset"
    assert client.get(f"{{{keys.prefix}}}:stats:events") == b"1"
    assert 0 < client.ttl(f"{keys.prefix}:recs:u1") <= 30
    cache.close()
    with pytest.raises(ValueError, match="cluster=True"):
        RedisCache(redis_cluster, CacheKeys(keys.prefix))
