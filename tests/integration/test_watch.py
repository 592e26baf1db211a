"""``streamrec watch`` against the real Redis: which users it shows."""

from __future__ import annotations

import pytest
import redis

from stream_app.cache import CacheKeys, Recommendation, UserRecs
from stream_app.cache.redis_backend import RedisCache
from stream_app.cli.watch import pick_users

pytestmark = pytest.mark.integration


def test_watch_shows_only_users_whose_recs_were_written_during_the_watch(redis_db):
    keys = CacheKeys("watchtest:v1")
    cache = RedisCache(redis_db, keys)
    item = (Recommendation("i1", 1.0, "trending now"),)
    stale = [UserRecs(f"old{n}", item, {}, computed_at=1_000) for n in range(5)]
    fresh = [UserRecs(u, item, {}, computed_at=5_000) for u in ("u9", "u10", "u2", "u3")]
    cache.write_batch(stale + fresh, ttl_s=60, stats={})
    client = redis.Redis.from_url(redis_db)
    assert pick_users(client, keys, 3, since_ms=5_000) == ["u10", "u2", "u3"]
    assert pick_users(client, keys, 10, since_ms=9_000) == []
    client.close()
    cache.close()
