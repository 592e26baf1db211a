"""The item catalog end to end: ``streamrec produce --items`` -> the compacted items topic ->
the worker's catalog side -> Redis -> the read API's titles, hidden items and tombstones."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient as AioClient
from aiohttp.test_utils import TestServer as AioServer
from kafka import KafkaProducer

from models.catalog import decode_item
from models.datasets import SyntheticConfig, synthetic_catalog
from stream_app.api.server import make_app
from stream_app.api.store import RedisReadStore
from stream_app.cache import CacheKeys, UserRecs
from stream_app.cache.journals import decode_entries
from stream_app.cli.produce import item_messages
from stream_app.kafka.admin import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

EVENTS = 2000
SEED = 7


def _produce(env: dict[str, str], *args: str) -> str:
    """``streamrec produce ARGS`` as a user runs it; its output."""
    out = subprocess.run(
        [sys.executable, "-m", "stream_app.cli", "produce", "--no-progress", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, f"producer failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out.stdout


def _served(api: dict[str, Any], path: str) -> list[dict]:
    """The items of one API answer (the API runs in-process against the real Redis)."""

    async def get() -> Any:
        resp = await api["client"].get(path)
        assert resp.status == 200, await resp.text()
        return await resp.json()

    return api["loop"].run_until_complete(get())["items"]


@pytest.fixture
def api(settings):
    """The read API over the test's Redis database, served in-process on loopback."""
    loop = asyncio.new_event_loop()
    store = RedisReadStore(settings.redis_url, CacheKeys(settings.redis_key_prefix))
    client = AioClient(AioServer(make_app(store, sampling=False)), loop=loop)
    loop.run_until_complete(client.start_server())
    yield {"client": client, "loop": loop}
    loop.run_until_complete(client.close())
    loop.close()


def _wait_until_hidden(api, user: str, item: str, timeout_s: float) -> float:
    """Seconds until ``item`` left the user's served list (fails after ``timeout_s``)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if item not in [i["item_id"] for i in _served(api, f"/recommendations/{user}?n=20")]:
            return time.monotonic() - start
        time.sleep(0.02)
    pytest.fail(f"{item} still served to {user} {timeout_s} s after it was hidden")


def test_catalog_titles_hidden_items_and_tombstones_reach_redis_and_the_api(
    settings, start_worker, wait_for, env_for, api
):
    ensure_topics(settings)
    worker = start_worker(settings)
    env = env_for(settings)
    _produce(env, "--generate", str(EVENTS), "--seed", str(SEED))
    out = _produce(env, "--items", "--generate", str(EVENTS), "--seed", str(SEED))
    catalog = {r.item_id: r for r in synthetic_catalog(SyntheticConfig(seed=SEED).resized(EVENTS))}
    assert f"produced {len(catalog)} item records" in out

    client = redis.Redis.from_url(settings.redis_url)
    keys = CacheKeys(settings.redis_key_prefix)
    metas = [keys.item_meta(i) for i in catalog]

    def mirrored() -> int:
        return sum(raw is not None for raw in client.mget(metas))

    wait_for(
        lambda: mirrored() == len(catalog) and int(client.get(keys.stat("events")) or 0) >= EVENTS,
        120,
        "every item record in Redis and every event processed",
        lambda: f"{mirrored()} of {len(catalog)} records\n{worker.log_tail()}",
    )
    assert decode_item(client.get(keys.item_meta("i3"))) == catalog["i3"]

    # The API describes every served item the catalog knows (all of them here).
    user = next(keys.user_from_recs_key(k.decode()) for k in client.scan_iter(keys.recs_pattern))
    cached = UserRecs.from_json(client.get(keys.recs(user)))
    served = _served(api, f"/recommendations/{user}?n=20")
    assert [i["item_id"] for i in served] == [r.item_id for r in cached.items]
    for item in served:
        record = catalog[item["item_id"]]
        assert (item["title"], item["categories"]) == (record.title, list(record.categories))

    # Hidden: gone from what the API serves within 1 s of the broker taking the record.
    target = served[0]["item_id"]
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap.split(","))
    producer.send(settings.topic_items, key=b"bad", value=b'{"item_id": "bad"}')  # no title
    for key, value in item_messages([catalog[target]], hide=[target]):
        producer.send(settings.topic_items, key=key, value=value)
    producer.flush()
    took = _wait_until_hidden(api, user, target, timeout_s=5.0)
    producer.close()
    assert took < 1.0, f"hidden after {took:.2f} s"
    assert client.smembers(keys.hidden_items) == {target.encode()}
    journal = decode_entries(client.lrange(keys.dead_letters, 0, -1))
    assert [(e["topic"], e["reason"]) for e in journal] == [
        (settings.topic_items, "item record: title must be a non-empty string")
    ]
    assert int(client.get(keys.stat("catalog_dlq"))) == 1
    after = [i["item_id"] for i in _served(api, f"/recommendations/{user}?n=20")]
    assert after == [r.item_id for r in cached.items if r.item_id != target]  # the rest, in order

    # A tombstone: the item's keys are gone, and it is still never served.
    other = served[1]["item_id"]
    _produce(env, "--items", "--delete", other)
    wait_for(
        lambda: client.exists(keys.item_meta(other)) == 0,
        30,
        f"the tombstone of {other} to remove its metadata",
        worker.log_tail,
    )
    assert client.sismember(keys.deleted_items, other)
    final = [i["item_id"] for i in _served(api, f"/recommendations/{user}?n=20")]
    assert other not in final and target not in final
    worker.assert_alive()
    assert worker.stop() == 0, worker.log_tail()
