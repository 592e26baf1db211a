"""``RecCache`` on Redis with redis-py's blocking client and pipelines.

Blocking on purpose: the worker calls it from a thread (``asyncio.to_thread``), one batch at a
time, so a slow Redis stalls only the batch that needs it and never the Kafka consumer's event
loop (heartbeats, fetches). Connection blips and timeouts are retried by redis-py with
exponential backoff; when the retries run out the error becomes ``CacheUnavailable``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from stream_app.cache.base import CacheUnavailable, UserRecs
from stream_app.cache.keys import STAT_NAMES, CacheKeys
from stream_app.cache.trending import decayed_ranking, forward_increments, plan_epoch

T = TypeVar("T")

#: Errors worth a retry: the server or the network blinked. Anything else is a bug.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)


class RedisCache:
    """Trending zset, per-user JSON recs with TTL and counters, under one key prefix.

    ``retries`` with exponential backoff (50 ms doubling, capped at 1 s) ride out a Redis restart
    of a few seconds; after that a batch's writes are given up (``CacheUnavailable``).
    """

    def __init__(
        self,
        url: str,
        keys: CacheKeys | None = None,
        *,
        retries: int = 6,
        socket_timeout_s: float = 5.0,
        max_trending: int = 50_000,
    ) -> None:
        self.keys = keys or CacheKeys()
        self.max_trending = max_trending
        self._redis = redis.Redis.from_url(
            url,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
            retry_on_error=list(TRANSIENT_ERRORS),
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
            health_check_interval=30,
        )

    @property
    def client(self) -> redis.Redis:
        """The underlying client (for tests and the ``watch`` command's reads)."""
        return self._redis

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except TRANSIENT_ERRORS as exc:
            raise CacheUnavailable(f"redis unavailable after retries: {exc}") from exc

    def ping(self) -> bool:
        return bool(self._call(self._redis.ping))

    def update_trending(
        self,
        weights: Sequence[tuple[str, float, int]],
        half_life_s: float,
        now_ms: int,
        top_k: int,
    ) -> list[tuple[str, float]]:
        if not weights:
            return self.top_trending(top_k, half_life_s, now_ms)
        keys = self.keys
        used_epoch: list[float] = []

        def transaction(pipe: Any) -> None:
            # WATCH on the epoch: if another worker rescales meanwhile, redo with its epoch.
            raw = pipe.get(keys.trending_epoch)
            current = float(raw) if raw is not None else None
            epoch, factor = plan_epoch(current, [ts for _, _, ts in weights], half_life_s)
            used_epoch[:] = [epoch]
            pipe.multi()
            if current is None or factor is not None:
                pipe.set(keys.trending_epoch, repr(float(epoch)))
            if factor is not None:
                pipe.zunionstore(keys.trending, {keys.trending: factor})
            for item, inc in forward_increments(weights, epoch, half_life_s).items():
                pipe.zincrby(keys.trending, inc, item)
            # Bound the set: items that fell this far down the ranking will never be shown.
            pipe.zremrangebyrank(keys.trending, 0, -(self.max_trending + 1))
            pipe.zrevrange(keys.trending, 0, max(top_k, 1) - 1, withscores=True)

        results: list[Any] = self._call(
            lambda: self._redis.transaction(transaction, keys.trending_epoch)  # type: ignore[arg-type,return-value]
        )
        stored = [(m.decode(), float(s)) for m, s in results[-1]]
        return decayed_ranking(stored, used_epoch[0], half_life_s, now_ms)[:top_k]

    def top_trending(self, k: int, half_life_s: float, now_ms: int) -> list[tuple[str, float]]:
        def read() -> tuple[Any, Any]:
            pipe = self._redis.pipeline(transaction=True)
            pipe.get(self.keys.trending_epoch)
            pipe.zrevrange(self.keys.trending, 0, max(k, 1) - 1, withscores=True)
            raw_epoch, members = pipe.execute()
            return raw_epoch, members

        raw_epoch, members = self._call(read)
        if raw_epoch is None:
            return []
        stored = [(m.decode(), float(s)) for m, s in members]
        return decayed_ranking(stored, float(raw_epoch), half_life_s, now_ms)[:k]

    def write_batch(self, recs: Sequence[UserRecs], ttl_s: int, stats: Mapping[str, int]) -> None:
        def write() -> None:
            pipe = self._redis.pipeline(transaction=False)
            for user_recs in recs:
                pipe.set(self.keys.recs(user_recs.user_id), user_recs.to_json(), ex=ttl_s)
            for name, count in stats.items():
                if count:
                    pipe.incrby(self.keys.stat(name), int(count))
            pipe.execute()

        self._call(write)

    def get_recs(self, user_id: str) -> UserRecs | None:
        raw = self._call(lambda: self._redis.get(self.keys.recs(user_id)))
        return None if raw is None else UserRecs.from_json(raw)

    def get_many_recs(self, user_ids: Sequence[str]) -> dict[str, UserRecs]:
        if not user_ids:
            return {}
        values = self._call(lambda: self._redis.mget([self.keys.recs(u) for u in user_ids]))
        out: dict[str, UserRecs] = {}
        for user_id, raw in zip(user_ids, values, strict=True):
            if raw is None:
                continue
            try:
                out[user_id] = UserRecs.from_json(raw)
            except (ValueError, KeyError, TypeError):
                continue  # a damaged entry is "no cached list", not a crash
        return out

    def get_stats(self) -> dict[str, int]:
        values = self._call(lambda: self._redis.mget([self.keys.stat(n) for n in STAT_NAMES]))
        return {
            name: int(v) if v is not None else 0 for name, v in zip(STAT_NAMES, values, strict=True)
        }

    def close(self) -> None:
        self._redis.close()
