"""The read side on a Redis Cluster: the API and ``streamrec watch`` read what the worker's
cache wrote, through the same connection factory (``redis+cluster://``), with the records and
lists spread over every master's slots."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient as AioClient
from aiohttp.test_utils import TestServer as AioServer

from models.catalog import ItemRecord
from stream_app.api.server import make_app
from stream_app.api.store import RedisReadStore
from stream_app.cache.base import Recommendation, UserRecs
from stream_app.cache.redis_backend import RedisCache
from stream_app.cache.telemetry import TelemetryKeys
from stream_app.cli.watch import pick_users
from stream_app.worker.telemetry import BatchTelemetry, TelemetryRecorder

pytestmark = pytest.mark.integration

NOW_MS = int(time.time() * 1000)


def test_the_api_serves_from_a_cluster_what_the_worker_wrote(redis_cluster, cluster_keys):
    keys = cluster_keys
    cache = RedisCache(redis_cluster, keys)
    items = [(f"t{i}", float(50 - i), NOW_MS) for i in range(40)]
    cache.update_trending(items, 3600.0, NOW_MS, 10)
    cache.write_catalog(
        {f"t{i}": ItemRecord(f"t{i}", f"Title {i}", hidden=i == 1) for i in range(40)}
    )
    users = [UserRecs(f"u{i}", (Recommendation("t5", 0.9, "trending now"),), {}, NOW_MS)
             for i in range(60)]  # fmt: skip
    cache.write_batch(users, ttl_s=600, stats={"events": 60, "batches": 1})
    recorder = TelemetryRecorder(cache.client, "w-cluster", TelemetryKeys(keys), worker_ttl_s=60)
    batch = BatchTelemetry.from_batch([NOW_MS - 40], NOW_MS, hits=1, trials=2, model_versions={})
    recorder.record(batch, now_ms=int(time.time() * 1000))

    async def scenario() -> dict[str, Any]:
        store = RedisReadStore(redis_cluster, keys, half_life_s=3600.0)
        async with AioClient(AioServer(make_app(store))) as client:
            out = {}
            for name, path in {"known": "/recommendations/u42?n=1",
                               "unknown": "/recommendations/newcomer?n=3",
                               "metrics": "/metrics"}.items():  # fmt: skip
                resp = await client.get(path)
                body = await (
                    resp.json() if resp.content_type == "application/json" else resp.text()
                )
                out[name] = (resp.status, body)
            return out

    got = asyncio.run(scenario())
    status, body = got["known"]
    assert status == 200 and body["source"] == "cache"
    assert [i["item_id"] for i in body["items"]] == ["t5"]
    status, body = got["unknown"]
    assert status == 200 and body["source"] == "trending"
    assert [i["item_id"] for i in body["items"]] == ["t0", "t2", "t3"]  # t1 hidden
    status, text = got["metrics"]
    assert status == 200 and "streamrec_events_total 60" in text
    assert pick_users(cache.client, keys, 100, since_ms=NOW_MS) == sorted(
        f"u{i}" for i in range(60)
    )
    cache.close()
