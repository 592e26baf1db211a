"""``/health`` tells the truth on the real stack: ``ok`` while an idle worker runs (its heartbeat
keeps it registered with no event flowing), ``degraded`` with HTTP 503 once it has stopped for
longer than ``HEALTH_WORKER_STALE_S``, and ``ok`` again when a worker is back."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient as AioClient
from aiohttp.test_utils import TestServer as AioServer

from stream_app.api.health import HealthPolicy
from stream_app.api.server import make_app
from stream_app.api.store import RedisReadStore
from stream_app.cache.keys import CacheKeys
from stream_app.cache.telemetry import WORKER_HEARTBEAT_S, TelemetryKeys
from stream_app.kafka.admin import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

#: Past one heartbeat period, so only a stopped worker goes stale.
STALE_S = WORKER_HEARTBEAT_S + 5


def _health(settings: Any) -> tuple[int, dict[str, Any]]:
    async def main() -> tuple[int, dict[str, Any]]:
        store = RedisReadStore(settings.redis_url, CacheKeys(settings.redis_key_prefix))
        app = make_app(store, sampling=False, health_policy=HealthPolicy(worker_stale_s=STALE_S))
        async with AioClient(AioServer(app)) as client:
            resp = await client.get("/health")
            return resp.status, json.loads(await resp.text())

    return asyncio.run(main())


def test_health_follows_the_workers_with_no_event_flowing(settings, start_worker, wait_for):
    ensure_topics(settings)
    client = redis.Redis.from_url(settings.redis_url)
    registry = TelemetryKeys(CacheKeys(settings.redis_key_prefix)).workers
    assert _health(settings)[0] == 503  # nothing has ever reported
    worker = start_worker(settings)
    wait_for(lambda: client.zcard(registry) > 0, 90, "the idle worker's heartbeat", worker.log_tail)
    first_seen = client.zrange(registry, 0, -1, withscores=True)[0][1]
    status, body = _health(settings)
    assert (status, body["status"], body["reasons"]) == (200, "ok", []), body
    # No event in all this time: the heartbeat alone keeps the worker registered and fresh.
    wait_for(
        lambda: client.zrange(registry, 0, -1, withscores=True)[0][1] > first_seen,
        WORKER_HEARTBEAT_S * 3,
        "a second heartbeat",
        worker.log_tail,
    )
    assert worker.stop() == 0, worker.log_tail()
    stopped = time.monotonic()
    wait_for(lambda: _health(settings)[0] == 503, STALE_S + 15, "/health to degrade", str)
    assert time.monotonic() - stopped > WORKER_HEARTBEAT_S - 5  # not before it could be stale
    status, body = _health(settings)
    assert body["status"] == "degraded" and "no worker has reported for" in body["reasons"][0]
    again = start_worker(settings)
    wait_for(lambda: _health(settings)[0] == 200, 90, "/health back to ok", again.log_tail)
