"""The read API against the real Redis started by ``make stack-up``.

Data is written the way the worker writes it (``RedisCache`` and ``TelemetryRecorder``) under a
key prefix unique to this test run, and removed afterwards, so a running demo is not disturbed.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient as AioClient
from aiohttp.test_utils import TestServer as AioServer

from stream_app.api.server import UNKNOWN_USER_REASON, make_app
from stream_app.api.store import POOL_SIZE, RedisReadStore
from stream_app.cache.base import Recommendation, UserRecs
from stream_app.cache.keys import CacheKeys
from stream_app.cache.redis_backend import RedisCache
from stream_app.cache.telemetry import TelemetryKeys
from stream_app.settings import Settings
from stream_app.worker.telemetry import BatchTelemetry, TelemetryRecorder

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NOW_MS = int(time.time() * 1000)


@pytest.fixture(scope="module")
def env_settings() -> Settings:
    return Settings.from_env()


@pytest.fixture()
def keys(env_settings: Settings) -> Iterator[CacheKeys]:
    keys = CacheKeys(f"itest-api-{uuid.uuid4().hex[:8]}:v1")
    yield keys
    client = redis.Redis.from_url(env_settings.redis_url)
    stale = list(client.scan_iter(match=f"{keys.prefix}:*"))
    if stale:
        client.delete(*stale)
    client.close()


def seed(settings: Settings, keys: CacheKeys, now_ms: int) -> None:
    """What a worker writes, at ``now_ms``: the test's own time, not the module's import (the
    trending scores decay from it with a one-hour half-life, so a suite that reaches this test
    a minute after collecting it read 4.995 for 5.0)."""
    cache = RedisCache(settings.redis_url, keys)
    cache.update_trending(
        [("t1", 5.0, now_ms), ("t2", 3.0, now_ms), ("t3", 1.0, now_ms)], 3600.0, now_ms, 10
    )
    recs = UserRecs(
        "u1",
        (Recommendation("i1", 0.9, "people like you"), Recommendation("i2", 0.4, "trending now")),
        {"cf": "cf-v1", "session": "s-20261123"},
        now_ms,
    )
    cache.write_batch([recs], ttl_s=600, stats={"events": 5, "dlq": 1, "batches": 1})
    cache.client.zadd(keys.neighbors("i1"), {"i2": 0.8, "i3": 0.5, "i4": 0.1})
    recorder = TelemetryRecorder(cache.client, "itest-worker", TelemetryKeys(keys), worker_ttl_s=60)
    recorder.record(
        BatchTelemetry.from_batch(
            [now_ms - 40, now_ms - 120, now_ms - 700],
            now_ms,
            hits=1,
            trials=3,
            model_versions={"session": "s-20261123"},
        ),
        now_ms=int(time.time() * 1000),  # reported now: /health reads a stale worker as gone
    )
    cache.close()


def with_client(store: Any, scenario: Any) -> Any:
    async def main() -> Any:
        async with AioClient(AioServer(make_app(store))) as client:
            return await scenario(client)

    return asyncio.run(main())


async def fetch(client: AioClient, path: str) -> tuple[int, Any]:
    resp = await client.get(path)
    if resp.content_type == "application/json":
        return resp.status, await resp.json()
    return resp.status, await resp.text()


def test_endpoints_serve_what_the_worker_wrote(env_settings: Settings, keys: CacheKeys) -> None:
    settings = env_settings
    now_ms = int(time.time() * 1000)
    seed(settings, keys, now_ms)

    async def scenario(client: AioClient) -> dict[str, tuple[int, Any]]:
        paths = {
            "known": "/recommendations/u1?n=1",
            "unknown": "/recommendations/newcomer?n=2",
            "similar": "/similar/i1?n=2",
            "no_similar": "/similar/zzz",
            "health": "/health",
            "metrics": "/metrics",
            "bad_n": "/recommendations/u1?n=500",
        }
        return {name: await fetch(client, path) for name, path in paths.items()}

    store = RedisReadStore(settings.redis_url, keys, half_life_s=3600.0)
    got = with_client(store, scenario)

    status, body = got["known"]
    assert status == 200 and body["source"] == "cache"
    assert body["items"] == [{"item_id": "i1", "score": 0.9, "reason": "people like you"}]
    assert body["model_versions"] == {"cf": "cf-v1", "session": "s-20261123"}
    assert body["computed_at"] == now_ms

    status, body = got["unknown"]
    assert status == 200 and body["source"] == "trending"
    assert [i["item_id"] for i in body["items"]] == ["t1", "t2"]
    assert body["items"][0]["reason"] == UNKNOWN_USER_REASON
    assert body["items"][0]["score"] == pytest.approx(5.0, rel=1e-3)

    assert got["similar"] == (
        200,
        {
            "item_id": "i1",
            "items": [{"item_id": "i2", "score": 0.8}, {"item_id": "i3", "score": 0.5}],
        },
    )
    assert got["no_similar"][0] == 404
    assert got["bad_n"][0] == 400

    status, body = got["health"]
    assert status == 200
    assert body["redis"] == "up" and body["model_versions"] == {"session": ["s-20261123"]}

    status, text = got["metrics"]
    lines = set(text.splitlines())
    assert status == 200
    assert "streamrec_events_total 5.0" in lines
    assert "streamrec_dlq_total 1.0" in lines
    assert "streamrec_online_trials_total 3.0" in lines
    assert 'streamrec_freshness_ms_bucket{le="50"} 1.0' in lines
    assert 'streamrec_freshness_ms_bucket{le="200"} 2.0' in lines
    assert 'streamrec_freshness_ms_bucket{le="+Inf"} 3.0' in lines
    assert "streamrec_freshness_ms_sum 860.0" in lines


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_redis_unreachable_is_503_and_the_api_keeps_answering() -> None:
    store = RedisReadStore(f"redis://127.0.0.1:{closed_port()}/0", timeout_s=0.5)

    async def scenario(client: AioClient) -> list[tuple[int, Any]]:
        return [
            await fetch(client, "/recommendations/u1"),
            await fetch(client, "/health"),
            await fetch(client, "/metrics"),
        ]

    recs, health, metrics = with_client(store, scenario)
    assert recs[0] == 503 and recs[1]["error"] == "unavailable"
    assert health[0] == 503 and health[1]["redis"] == "down"
    assert metrics[0] == 200 and "streamrec_redis_up 0.0" in metrics[1].splitlines()


@pytest.fixture()
def api_command() -> Iterator[str]:
    """``streamrec api`` as the operator starts it (the env's Redis, read only), once it
    answers; its base URL."""
    port = closed_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream_app.cli", "api", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and get(base, "/health")[0] == 0:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def get(base: str, path: str, method: str = "GET") -> tuple[int, str, str]:
    """``(status, content type, body)``; status 0 when nothing answers."""
    request = urllib.request.Request(base + path, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.headers.get_content_type(), resp.read().decode()
    except urllib.error.HTTPError as exc:  # 4xx/5xx: an answer, with its body
        return exc.code, exc.headers.get_content_type(), exc.read().decode()
    except OSError:
        return 0, "", ""


def test_streamrec_api_command_serves_health(api_command: str) -> None:
    status, _, body = get(api_command, "/health")  # 503: degraded (no worker of ours runs)
    assert status in (200, 503) and '"redis": "up"' in body


def test_the_running_api_refuses_bad_ids_and_unknown_routes_as_json(api_command: str) -> None:
    """The real server, not the test client: an id past the contract's 256 characters is a
    JSON 400 however long (up to the HTTP parser's request-line limit), an unknown route or
    method a JSON 404/405, and the process keeps serving after them."""
    answers = {
        path: get(api_command, path)
        for path in [
            "/recommendations/" + "x" * 257,
            "/recommendations/" + "x" * 4000,
            "/similar/" + "y" * 257,
            "/dashboard/item/" + "z" * 257,
            "/recommendations/u1?exclude=" + "e" * 257,
            "/recommendations/%20%20",
        ]
    }
    for path, (status, kind, body) in answers.items():
        assert (status, kind) == (400, "application/json"), path[:40]
        assert json.loads(body)["error"] == "bad_request"
    assert "longer than 256 characters" in answers["/recommendations/" + "x" * 4000][2]
    for path in ["/nope", "/recommendations", "/recommendations/", "/recommendations/a/b"]:
        status, kind, body = get(api_command, path)
        assert (status, kind, json.loads(body)["error"]) == (404, "application/json", "not_found")
    status, kind, body = get(api_command, "/recommendations/u1", method="POST")
    assert (status, json.loads(body)["error"]) == (405, "method_not_allowed")
    # Past aiohttp's request-line limit (8,190 bytes) its HTTP parser answers before any
    # route: still a 400, in plain text (docs/api.md says so).
    assert get(api_command, "/recommendations/" + "x" * 9000)[0] == 400
    assert get(api_command, "/recommendations/" + "x" * 256)[0] == 200
    assert get(api_command, "/health")[0] in (200, 503)


def test_a_new_users_events_reach_the_api_through_a_real_worker(
    settings: Settings, start_worker: Any, wait_for: Any
) -> None:
    """Kafka -> worker -> Redis -> API: before her events a new user gets the trending fallback,
    after them her own cached list, without the items she interacted with."""
    from kafka import KafkaProducer

    from models.events import Interaction
    from stream_app.cli.produce import encode_message

    worker = start_worker(settings)
    wait_for(
        lambda: "Ready" in worker.log_path.read_text(errors="replace"),
        120,
        "the worker to be ready",
        worker.log_tail,
    )
    store_keys = CacheKeys(settings.redis_key_prefix)
    user = f"newcomer-{uuid.uuid4().hex[:8]}"
    now = int(time.time() * 1000)
    others = [Interaction(f"other-{j}", f"pop-{j % 5}", "purchase", now + j) for j in range(20)]
    mine = [
        Interaction(user, "pop-0", "view", now + 30),
        Interaction(user, "pop-1", "click", now + 31),
    ]

    async def before(client: AioClient) -> tuple[int, Any]:
        return await fetch(client, f"/recommendations/{user}?n=5")

    status, body = with_client(RedisReadStore(settings.redis_url, store_keys), before)
    assert status == 200 and body["source"] == "trending"

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap.split(","))
    for event in others + mine:
        key, value = encode_message(event)
        producer.send(settings.topic_events, key=key, value=value)
    producer.flush()
    producer.close()

    client = redis.Redis.from_url(settings.redis_url)
    wait_for(
        lambda: client.exists(store_keys.recs(user)) == 1,
        60,
        f"recommendations for {user}",
        worker.log_tail,
    )
    worker.assert_alive()

    async def after(client: AioClient) -> tuple[int, Any]:
        return await fetch(client, f"/recommendations/{user}?n=5")

    status, body = with_client(RedisReadStore(settings.redis_url, store_keys), after)
    assert status == 200 and body["source"] == "cache", body
    items = [i["item_id"] for i in body["items"]]
    assert items and not {"pop-0", "pop-1"} & set(items)
    assert set(items) <= {f"pop-{j}" for j in range(5)}
    assert body["model_versions"] and body["computed_at"] >= now - 60_000


def test_metrics_report_the_worker_groups_consumer_lag_from_kafka(
    env_settings: Settings, keys: CacheKeys
) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    from stream_app.api.lag import LagProbe
    from stream_app.kafka.admin import TopicSpec, admin_client, ensure_topics

    run = uuid.uuid4().hex[:8]
    topic, group = f"itest-lag-{run}", f"itest-lag-group-{run}"
    ensure_topics(env_settings, [TopicSpec(topic, 2, 1)], timeout_s=60)
    servers = env_settings.kafka_bootstrap.split(",")
    try:
        producer = KafkaProducer(bootstrap_servers=servers)
        for n in range(10):  # 5 messages per partition
            producer.send(topic, value=b"x", partition=n % 2)
        producer.flush()
        producer.close()
        # The group has committed 3 of partition 0's messages and none of partition 1's.
        consumer = KafkaConsumer(bootstrap_servers=servers, group_id=group)
        consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(3, "", -1)})
        consumer.close()
        probe = LagProbe(env_settings.kafka, group, [topic, f"{topic}-missing"])

        async def scrape() -> str:
            store = RedisReadStore(env_settings.redis_url, keys)
            async with AioClient(AioServer(make_app(store, probe))) as client:
                response = await client.get("/metrics")
                assert response.status == 200
                return await response.text()

        text = asyncio.run(scrape())
        # 2 left on partition 0, all 5 on partition 1 (a new group reads from the earliest)
        assert f'streamrec_consumer_lag{{group="{group}",topic="{topic}"}} 7.0' in text
        assert f"{topic}-missing" not in text  # not knowable: left out, not reported as 0
    finally:
        with admin_client(env_settings) as admin:
            admin.delete_topics([topic])  # type: ignore[attr-defined]


def test_more_concurrent_requests_than_redis_connections_queue_instead_of_failing(
    redis_db: str,
) -> None:
    """A burst of concurrent reads shares the store's bounded pool: every read answers, and
    the store never holds more than ``POOL_SIZE`` connections (redis-py's default pool raised
    "Too many connections", a 503, past 100 reads in flight)."""
    cache = RedisCache(redis_db, CacheKeys())
    recs = UserRecs("u1", (Recommendation("i1", 0.9, "r"),), {"cf": "v1"}, NOW_MS)
    cache.write_batch([recs], ttl_s=600, stats={})
    cache.close()
    watcher = redis.Redis.from_url(redis_db)
    db = int(redis_db.rsplit("/", 1)[1])

    def connections() -> int:
        return sum(1 for c in watcher.client_list() if int(c["db"]) == db)

    async def burst() -> tuple[list[Any], int]:
        before = connections()  # the watcher's and the fixture's
        store = RedisReadStore(redis_db, CacheKeys())
        try:
            got = await asyncio.gather(*(store.get_recs("u1") for _ in range(3 * POOL_SIZE)))
            return got, connections() - before
        finally:
            await store.close()

    got, opened = asyncio.run(burst())
    assert all(r is not None and r.recs.items[0].item_id == "i1" for r in got)
    assert 0 < opened <= POOL_SIZE
    watcher.close()
