"""``RedisReadStore``'s new reads (a user's recent history, successors, trending rank, the
journals) over a stand-in for redis-py's asyncio client: the parsing and the arithmetic, no
Redis. The real client against the real Redis is the integration suite's."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stream_app.api.store import CachedRecs, RedisReadStore
from stream_app.cache.base import CacheUnavailable, UserRecs, encode_neighbors
from stream_app.cache.keys import CacheKeys

KEYS = CacheKeys("t:v1")
HOUR_MS = 3_600_000


class Pipeline:
    def __init__(self, redis: FakeRedis) -> None:
        self.redis = redis
        self.calls: list[Any] = []

    async def __aenter__(self) -> Pipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def get(self, key: str) -> None:
        self.calls.append(self.redis.strings.get(key))

    def zrevrank(self, key: str, member: str) -> None:
        ranked = sorted(self.redis.zsets.get(key, {}).items(), key=lambda p: (-p[1], p[0]))
        names = [m for m, _ in ranked]
        self.calls.append(names.index(member) if member in names else None)

    def zscore(self, key: str, member: str) -> None:
        self.calls.append(self.redis.zsets.get(key, {}).get(member))

    async def execute(self) -> list[Any]:
        return self.calls


class FakeRedis:
    """The few ``redis.asyncio.Redis`` calls these reads make, over dicts (bytes out)."""

    def __init__(self) -> None:
        self.strings: dict[str, bytes] = {}
        self.lists: dict[str, list[bytes]] = {}
        self.zsets: dict[str, dict[str, float]] = {}
        self.refuse = False

    async def get(self, key: str) -> bytes | None:
        if self.refuse:
            raise ConnectionRefusedError("refused")
        return self.strings.get(key)

    async def lrange(self, key: str, start: int, stop: int) -> list[bytes]:
        return self.lists.get(key, [])[start : stop + 1]

    def pipeline(self, transaction: bool = True) -> Pipeline:
        return Pipeline(self)


@pytest.fixture
def redis_store() -> tuple[RedisReadStore, FakeRedis]:
    store = RedisReadStore("redis://127.0.0.1:1/0", KEYS, half_life_s=3600.0)
    fake = FakeRedis()
    store._redis = fake  # the client's calls, not its connection, are what is tested here
    return store, fake


def test_a_cached_list_brings_its_recent_history(redis_store: Any) -> None:
    store, fake = redis_store
    fake.strings[KEYS.recs("u1")] = (
        b'{"user_id": "u1", "items": [{"item_id": "a", "score": 1.0, "reason": "r"}],'
        b' "model_versions": {}, "computed_at": 5, "recent": ["h1", "h2"]}'
    )
    fake.strings[KEYS.recs("old")] = UserRecs("old", ()).to_json()  # before the field existed
    got = asyncio.run(store.get_recs("u1"))
    assert isinstance(got, CachedRecs)
    assert got.recent == ("h1", "h2") and got.recs.items[0].item_id == "a"
    assert asyncio.run(store.get_recs("old")).recent == ()
    assert asyncio.run(store.get_recs("nobody")) is None


def test_successors_decode_like_neighbours_and_are_cut_to_n(redis_store: Any) -> None:
    store, fake = redis_store
    fake.strings[KEYS.successors("a")] = encode_neighbors([("b", 0.5), ("c", 0.25), ("d", 0.1)])
    assert asyncio.run(store.successors("a", 2)) == [("b", 0.5), ("c", 0.25)]
    assert asyncio.run(store.successors("zzz", 2)) is None


def test_trending_rank_is_one_based_with_the_score_decayed_to_now(redis_store: Any) -> None:
    store, fake = redis_store
    fake.strings[KEYS.trending_epoch] = b"0.0"
    fake.zsets[KEYS.trending] = {"a": 8.0, "b": 4.0, "c": 2.0}
    # Forward scores two half-lives after the epoch are four times the decayed ones.
    assert asyncio.run(store.trending_rank("b", 2 * HOUR_MS)) == (2, 1.0)
    assert asyncio.run(store.trending_rank("a", 2 * HOUR_MS)) == (1, 2.0)
    assert asyncio.run(store.trending_rank("zzz", 2 * HOUR_MS)) is None
    del fake.strings[KEYS.trending_epoch]  # nothing trending yet
    assert asyncio.run(store.trending_rank("a", 0)) is None


def test_the_journals_are_read_newest_first_and_capped(redis_store: Any) -> None:
    store, fake = redis_store
    fake.lists[KEYS.dead_letters] = [
        f'{{"reason": "r{i}", "topic": "events", "partition": 0, "offset": {i},'
        f' "dead_at_ms": {i}, "payload_size": 1, "preview": "x"}}'.encode()
        for i in (9, 8, 7)
    ]
    fake.lists[KEYS.model_decisions] = [
        b'{"at_ms": 2, "version": "v2", "accepted": true, "reason": "better", "trigger": "poll"}'
    ]
    assert [d.offset for d in asyncio.run(store.dead_letters(2))] == [9, 8]
    [decision] = asyncio.run(store.model_decisions(50))
    assert decision.accepted and decision.version == "v2"


def test_an_unreachable_redis_is_cache_unavailable(redis_store: Any) -> None:
    store, fake = redis_store
    fake.refuse = True
    with pytest.raises(CacheUnavailable):
        asyncio.run(store.successors("a", 5))
