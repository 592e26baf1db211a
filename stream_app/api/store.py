"""What the read API reads from Redis: a user's cached list, an item's neighbours and successors,
the trending ranking, the catalog's metadata and hidden items, the telemetry snapshot and the
workers' journals, through redis-py's asyncio client so no request blocks another.
``ReadStore`` is the interface the routes see; tests give it an in-memory one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from models.catalog import ItemRecord
from models.online.decay import forward_to_decayed
from stream_app.api.journals import (
    DeadLetterEntry,
    ModelDecision,
    parse_dead_letters,
    parse_model_decisions,
)
from stream_app.cache.base import CacheUnavailable, UserRecs, decode_item_meta, decode_neighbors
from stream_app.cache.connect import as_access, connect_redis_async
from stream_app.cache.keys import STAT_NAMES, CacheKeys
from stream_app.cache.telemetry import (
    WORKER_TTL_S,
    RankerStats,
    TelemetryKeys,
    TelemetrySnapshot,
    parse_snapshot,
    ranker_stats,
)
from stream_app.cache.trending import decayed_ranking
from stream_app.settings import RedisAccess

log = logging.getLogger(__name__)


def parse_neighbors(raw: Any) -> list[tuple[str, float]]:
    """Neighbours stored as a JSON string, best first: ``[[item, score], ...]`` or
    ``{"items": [{"item_id", "score"}, ...]}`` (the sorted-set form is read natively).

    >>> parse_neighbors(b'[["b", 0.5], ["c", 0.25]]')
    [('b', 0.5), ('c', 0.25)]
    >>> parse_neighbors('{"items": [{"item_id": "b", "score": 0.5}]}')
    [('b', 0.5)]
    """
    data = json.loads(raw)
    if isinstance(data, Mapping):
        data = [(r["item_id"], r["score"]) for r in data.get("items", [])]
    return [(str(item), float(score)) for item, score in data]


#: The trending head and its catalog entries in one round trip (a pipeline cannot: the item
#: keys depend on the ranking). KEYS: epoch, trending, hidden, deleted; ARGV: how many, the
#: item-record key prefix. The record keys are built inside, so this needs one Redis: on a
#: cluster (records in every slot) ``trending_catalog`` takes two round trips instead.
TRENDING_CATALOG_LUA = """
local epoch = redis.call('GET', KEYS[1])
local flat = redis.call('ZREVRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
local ids, records = {}, {}
for i = 1, #flat, 2 do
  ids[#ids + 1] = flat[i]
  records[#records + 1] = ARGV[2] .. flat[i]
end
if #ids == 0 then return {epoch, flat, {}, {}, {}} end
return {epoch, flat, redis.call('MGET', unpack(records)),
        redis.call('SMISMEMBER', KEYS[3], unpack(ids)),
        redis.call('SMISMEMBER', KEYS[4], unpack(ids))}
"""


def _catalog_view(
    ids: Sequence[str], raws: Sequence[Any], hidden: Sequence[Any], deleted: Sequence[Any]
) -> CatalogView:
    """The view of ``ids`` from their record values and their two set memberships."""
    flags = zip(ids, hidden, deleted, strict=True)
    hidden_ids = frozenset(i for i, is_hidden, is_deleted in flags if is_hidden or is_deleted)
    return CatalogView(decode_item_meta(ids, raws), hidden_ids)


@dataclass(frozen=True, slots=True)
class CachedRecs:
    """A user's cached list and the history it was computed from (``recent``, oldest first)."""

    recs: UserRecs
    recent: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, raw: bytes | str) -> CachedRecs:
        recs = UserRecs.from_json(raw)
        return cls(recs, recs.recent)


@dataclass(frozen=True, slots=True)
class CatalogView:
    """What the catalog says of some items: the records of those that have one, and which of
    them are not to be served (``hidden``: hidden by their record, or deleted by a tombstone)."""

    meta: Mapping[str, ItemRecord]
    hidden: frozenset[str] = frozenset()

    def visible(self, item_ids: Sequence[str]) -> list[str]:
        """``item_ids`` without the hidden ones, in order.

        >>> CatalogView({}, frozenset({"b"})).visible(["a", "b", "c"])
        ['a', 'c']
        """
        return [i for i in item_ids if i not in self.hidden]


class ReadStore(Protocol):
    """What the API reads. ``RedisReadStore`` in production, a fake in unit tests. Every method
    raises ``CacheUnavailable`` when the store cannot be reached."""

    async def get_recs(self, user_id: str) -> CachedRecs | None: ...

    async def trending_rank(self, item_id: str, now_ms: int) -> tuple[int, float] | None:
        """The item's 1-based trending rank and its decayed score at ``now_ms``; None when it
        is not trending."""
        ...

    async def neighbors(self, item_id: str, n: int) -> list[tuple[str, float]] | None: ...

    async def successors(self, item_id: str, n: int) -> list[tuple[str, float]] | None:
        """The items users went to next after this one, likeliest first; None when none."""
        ...

    async def catalog(self, item_ids: Sequence[str]) -> CatalogView:
        """The catalog records of these items and which of them not to serve (hidden or
        deleted), in one round trip."""
        ...

    async def trending_catalog(
        self, n: int, now_ms: int
    ) -> tuple[list[tuple[str, float]], CatalogView]:
        """The ``n`` most trending items, best first, with their decayed scores at ``now_ms``,
        and the ``catalog`` view of those items, in one round trip."""
        ...

    async def dead_letters(self, n: int) -> list[DeadLetterEntry]:
        """The newest ``n`` dead letters, newest first."""
        ...

    async def model_decisions(self, n: int) -> list[ModelDecision]:
        """The model slot's newest ``n`` decisions, newest first."""
        ...

    async def ping(self) -> bool: ...

    async def snapshot(self) -> TelemetrySnapshot: ...

    async def ranker_states(self, partitions: Sequence[int]) -> list[RankerStats]:
        """The rankers' counters of these partitions; none stored yet or damaged: left out."""
        ...

    async def close(self) -> None: ...


#: Redis connections one API process opens at most. A request waits for a free one rather than
#: failing: redis-py's default pool raises "Too many connections" past 100, and 1,000
#: concurrent clients turned 90% of answers into 503s (docs/api.md, "Under load").
POOL_SIZE = 50

#: How long a request waits for a free connection before its 503: longer than a Redis call,
#: since under a burst the wait is the queue of requests ahead of it, not a dead Redis.
POOL_WAIT_S = 5.0


class RedisReadStore:
    """Reads the worker-written keys with redis-py's asyncio client.

    Fails fast (one retry, 1 s timeouts) rather than retrying for seconds like the worker's
    cache: an API caller would rather get a 503 now than a late answer. Requests share a
    bounded pool (``pool_size``) and queue for it up to ``pool_wait_s``.
    """

    def __init__(
        self,
        url: RedisAccess | str,
        keys: CacheKeys | None = None,
        half_life_s: float = 3600.0,
        timeout_s: float = 1.0,
        pool_size: int = POOL_SIZE,
        pool_wait_s: float = POOL_WAIT_S,
    ) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        access = as_access(url)
        self.keys = keys or CacheKeys(cluster=access.cluster)
        #: a Redis Cluster: reads that span slots go slot by slot
        self._cluster = access.cluster
        self.telemetry_keys = TelemetryKeys(self.keys)
        self.half_life_s = half_life_s
        self._errors: tuple[type[Exception], ...] = (
            aioredis.ConnectionError,
            aioredis.TimeoutError,
            OSError,
        )
        self._redis = connect_redis_async(
            url,
            max_connections=pool_size,
            pool_wait_s=pool_wait_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
        )
        self._trending_catalog = self._redis.register_script(TRENDING_CATALOG_LUA)

    async def _call(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await fn()
        except self._errors as exc:
            raise CacheUnavailable(f"redis unavailable: {exc}") from exc

    async def get_recs(self, user_id: str) -> CachedRecs | None:
        raw = await self._call(lambda: self._redis.get(self.keys.recs(user_id)))
        return None if raw is None else CachedRecs.from_json(raw)

    async def trending_catalog(
        self, n: int, now_ms: int
    ) -> tuple[list[tuple[str, float]], CatalogView]:
        keys = [
            self.keys.trending_epoch,
            self.keys.trending,
            self.keys.hidden_items,
            self.keys.deleted_items,
        ]
        args = [n, self.keys.item_meta("")]
        if self._cluster:
            read = self._trending_catalog_by_slot(n)
        else:
            read = self._trending_catalog(keys=keys, args=args)
        raw_epoch, flat, raws, hidden_flags, deleted_flags = await self._call(lambda: read)
        stored = [(m.decode(), float(s)) for m, s in zip(flat[::2], flat[1::2], strict=True)]
        catalog = _catalog_view([i for i, _ in stored], raws, hidden_flags, deleted_flags)
        if raw_epoch is None:
            return [], catalog
        # Order by the stored forward score (ties: item id), as the worker does. The decayed
        # score is only for display: on replayed old data it can underflow to 0 at wall-clock now.
        order = {item: i for i, (item, _) in enumerate(sorted(stored, key=lambda p: (-p[1], p[0])))}
        decayed = decayed_ranking(stored, float(raw_epoch), self.half_life_s, now_ms)
        return sorted(decayed, key=lambda p: order[p[0]])[:n], catalog

    async def _trending_catalog_by_slot(self, n: int) -> list[Any]:
        """What ``TRENDING_CATALOG_LUA`` returns, read from a cluster: the trending head from
        the shared slot first, then the records from their slots and the flags."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(self.keys.trending_epoch)
            pipe.zrevrange(self.keys.trending, 0, n - 1, withscores=True)
            raw_epoch, members = await pipe.execute()
        flat = [x for m, score in members for x in (m, repr(float(score)).encode())]
        if not members:
            return [raw_epoch, flat, [], [], []]
        raws, hidden, deleted = await self._catalog_reads([m.decode() for m, _ in members])
        return [raw_epoch, flat, raws, hidden, deleted]

    async def _catalog_reads(self, ids: list[str]) -> list[Any]:
        """The records of ``ids`` and their hidden and deleted flags; on a cluster the records
        (spread over the slots) are read apart from the flags (one shared slot)."""
        if not self._cluster:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.mget([self.keys.item_meta(i) for i in ids])
                pipe.smismember(self.keys.hidden_items, ids)
                pipe.smismember(self.keys.deleted_items, ids)
                return list(await pipe.execute())
        cluster: Any = self._redis  # a RedisCluster here (its MGET across slots)
        raws = await cluster.mget_nonatomic([self.keys.item_meta(i) for i in ids])
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.smismember(self.keys.hidden_items, ids)
            pipe.smismember(self.keys.deleted_items, ids)
            return [raws, *await pipe.execute()]

    async def trending_rank(self, item_id: str, now_ms: int) -> tuple[int, float] | None:
        async def read() -> list[Any]:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(self.keys.trending_epoch)
                pipe.zrevrank(self.keys.trending, item_id)
                pipe.zscore(self.keys.trending, item_id)
                return list(await pipe.execute())

        raw_epoch, rank, stored = await self._call(read)
        if raw_epoch is None or rank is None or stored is None:
            return None
        # ZREVRANK breaks ties by member name descending, trending() by item id ascending:
        # equal forward scores are rare, and the rank is for display.
        epoch = float(raw_epoch)
        score = forward_to_decayed(float(stored), max(now_ms, epoch), epoch, self.half_life_s)
        return int(rank) + 1, score

    async def successors(self, item_id: str, n: int) -> list[tuple[str, float]] | None:
        raw = await self._call(lambda: self._redis.get(self.keys.successors(item_id)))
        return None if raw is None else decode_neighbors(raw)[:n]

    async def catalog(self, item_ids: Sequence[str]) -> CatalogView:
        ids = list(dict.fromkeys(item_ids))
        if not ids:
            return CatalogView({})

        raws, hidden_flags, deleted_flags = await self._call(lambda: self._catalog_reads(ids))
        return _catalog_view(ids, raws, hidden_flags, deleted_flags)

    async def dead_letters(self, n: int) -> list[DeadLetterEntry]:
        raws = await self._call(lambda: self._redis.lrange(self.keys.dead_letters, 0, n - 1))
        return parse_dead_letters(raws)

    async def model_decisions(self, n: int) -> list[ModelDecision]:
        raws = await self._call(lambda: self._redis.lrange(self.keys.model_decisions, 0, n - 1))
        return parse_model_decisions(raws)

    async def neighbors(self, item_id: str, n: int) -> list[tuple[str, float]] | None:
        key = self.keys.neighbors(item_id)

        async def read() -> list[tuple[str, float]] | None:
            kind = await self._redis.type(key)
            kind = kind.decode() if isinstance(kind, bytes) else kind
            if kind == "none":
                return None
            if kind == "zset":
                members: Any = await self._redis.zrevrange(key, 0, n - 1, withscores=True)
                return [(m.decode(), float(s)) for m, s in members]
            if kind == "string":
                return parse_neighbors(await self._redis.get(key))[:n]
            raise ValueError(f"{key} has unexpected Redis type {kind}")

        return await self._call(read)

    async def ping(self) -> bool:
        return bool(await self._call(self._redis.ping))

    async def snapshot(self) -> TelemetrySnapshot:
        tk = self.telemetry_keys

        async def read() -> TelemetrySnapshot:
            since = int(time.time() * 1000) - WORKER_TTL_S * 1000
            ids = [
                i.decode() if isinstance(i, bytes) else str(i)
                for i in await self._redis.zrangebyscore(tk.workers, since, "+inf")
            ]
            worker_keys = [tk.worker(i) for i in ids]
            async with self._redis.pipeline(transaction=False) as pipe:
                # MGET as a raw command: the cluster pipeline blocks its mget(), not the
                # command (the counters share one slot there)
                pipe.execute_command("MGET", *[self.keys.stat(name) for name in STAT_NAMES])
                pipe.hgetall(tk.hitrate)
                pipe.hgetall(tk.freshness)
                for key in worker_keys:
                    pipe.hgetall(key)
                replies = await pipe.execute()
            stat_values, hitrate, freshness, *workers = replies
            stats = {
                n: int(v) if v is not None else 0
                for n, v in zip(STAT_NAMES, stat_values, strict=True)
            }
            # An expired worker hash reads as {}: that worker is gone, leave it out.
            by_worker = {i: w for i, w in zip(ids, workers, strict=True) if w}
            return parse_snapshot(stats, hitrate, freshness, by_worker)

        return await self._call(read)

    async def ranker_states(self, partitions: Sequence[int]) -> list[RankerStats]:
        parts = list(partitions)
        if not parts:
            return []
        raws = await self._call(lambda: self._redis.mget([self.keys.ranker(p) for p in parts]))
        return ranker_stats(parts, raws)

    async def close(self) -> None:
        await self._redis.aclose()
