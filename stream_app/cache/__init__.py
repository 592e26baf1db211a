"""The cache layer: key builder, interface, and backends chosen by URL.

``open_cache("redis://127.0.0.1:6379/0")`` gives the Redis backend, ``open_cache("memory://")``
the in-process one used by tests.
"""

from __future__ import annotations

from stream_app.cache.base import CacheUnavailable, RecCache, Recommendation, UserRecs
from stream_app.cache.keys import STAT_NAMES, CacheKeys
from stream_app.cache.memory import MemoryCache
from stream_app.settings import RedisAccess


def open_cache(url: RedisAccess | str, keys: CacheKeys | None = None) -> RecCache:
    """A backend by URL scheme: ``redis``/``rediss``/``unix``, ``redis+cluster``/``rediss+cluster``
    (a Redis Cluster) or ``memory``; a ``RedisAccess`` (``Settings.redis``) brings the TLS files
    along with the URL.

    >>> type(open_cache("memory://")).__name__
    'MemoryCache'
    """
    scheme = (url if isinstance(url, str) else url.url).split("://", 1)[0]
    if scheme == "memory":
        return MemoryCache()
    if scheme in {"redis", "rediss", "unix", "redis+cluster", "rediss+cluster"}:
        from stream_app.cache.redis_backend import RedisCache

        return RedisCache(url, keys)
    raise ValueError(
        f"no cache backend for {scheme}:// (use redis://..., redis+cluster://... or memory://)"
    )


__all__ = [
    "STAT_NAMES",
    "CacheKeys",
    "CacheUnavailable",
    "MemoryCache",
    "RecCache",
    "Recommendation",
    "UserRecs",
    "open_cache",
]
