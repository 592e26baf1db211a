"""Dead letters are sent and counted once per source position (``send_once``), whatever replays
them; with the cache down they are still sent. The topic is a recorder (pure logic), the cache
the in-memory backend; the Redis backend's ``count_once`` is in the cache contract suite."""

from __future__ import annotations

import asyncio

import pytest

from stream_app.cache import CacheKeys, MemoryCache
from stream_app.cache.base import CacheUnavailable
from stream_app.cache.journals import decode_entries
from stream_app.worker.dead_letters import send_once
from stream_app.worker.records import DeadLetter, dead_letter

KEYS = CacheKeys("t:v1")


class _Topic:
    """Records what is sent; each send is acknowledged at once (a resolved future)."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, DeadLetter]] = []

    async def send(self, key: bytes, value: DeadLetter) -> asyncio.Future:
        self.sent.append((key, value))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def _letter(offset: int, partition: int = 0) -> DeadLetter:
    return dead_letter(b"{x", "not JSON", topic="ev", partition=partition, offset=offset)


def _send(topic: _Topic, cache: MemoryCache, letters: list[DeadLetter], stat: str = "dlq") -> int:
    return asyncio.run(send_once(topic, cache, KEYS, letters, stat))


def test_a_replayed_batch_neither_resends_nor_recounts_its_dead_letters():
    topic, cache = _Topic(), MemoryCache()
    first = [_letter(2), _letter(4), _letter(3, partition=1)]
    assert _send(topic, cache, first) == 3
    assert _send(topic, cache, first) == 0  # a restart hands the same batch over again
    assert _send(topic, cache, [_letter(4), _letter(5)]) == 1  # overlapping: only 5 is new
    assert [key for key, _ in topic.sent] == [b"ev/0/2", b"ev/0/4", b"ev/1/3", b"ev/0/5"]
    assert cache.get_stats()["dlq"] == 4
    journal = decode_entries(cache.read_journal(KEYS.dead_letters, 10))
    assert [e["offset"] for e in journal] == [5, 3, 4, 2]  # newest first, each once


def test_unknown_positions_are_always_sent_and_each_side_has_its_own_counter():
    topic, cache = _Topic(), MemoryCache()
    assert _send(topic, cache, [_letter(-1)]) == 1
    assert _send(topic, cache, [_letter(-1)]) == 1
    assert _send(topic, cache, [_letter(7)], stat="item_dlq") == 1
    assert cache.get_stats()["dlq"] == 2 and cache.get_stats()["item_dlq"] == 1


class _DownCache(MemoryCache):
    def read_hwm(self, topic: str) -> dict[int, int]:
        raise CacheUnavailable("redis down")

    def count_once(self, stat: str, marks: str, positions) -> int:
        raise CacheUnavailable("redis down")


def test_with_the_cache_down_every_dead_letter_is_still_sent():
    topic = _Topic()
    assert _send(topic, _DownCache(), [_letter(1), _letter(2)]) == 0  # not counted
    assert [letter.offset for _, letter in topic.sent] == [1, 2]


def test_an_unacknowledged_dead_letter_fails_the_batch(monkeypatch):
    """The batch must not go on (and its marks move) while its dead letters may be lost."""

    class _Lost(_Topic):
        async def send(self, key: bytes, value: DeadLetter) -> asyncio.Future:
            failed = asyncio.get_running_loop().create_future()
            failed.set_exception(ConnectionError("broker gone"))
            return failed

    cache = MemoryCache()
    with pytest.raises(ConnectionError):
        _send(_Lost(), cache, [_letter(1)])
    assert cache.get_stats().get("dlq", 0) == 0 and cache.read_hwm("ev:dead") == {}
