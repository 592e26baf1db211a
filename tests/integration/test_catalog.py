"""The item catalog end to end: ``streamrec produce --items`` -> the compacted items topic ->
the worker's catalog side -> Redis -> the read API's titles, hidden items and tombstones."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient as AioClient
from aiohttp.test_utils import TestServer as AioServer
from kafka import KafkaProducer

from models.catalog import decode_item
from models.datasets import SyntheticConfig, synthetic_catalog
from models.online.stream.reasons import titled
from stream_app.api.filters import FILL_DEPTH
from stream_app.api.server import make_app
from stream_app.api.store import RedisReadStore
from stream_app.cache import CacheKeys, UserRecs
from stream_app.cache.journals import decode_entries
from stream_app.cli.produce import item_messages
from stream_app.kafka.admin import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

EVENTS = 2000
SEED = 7


def _answer(api: dict[str, Any], path: str) -> dict:
    """One API answer, a 200 (the API runs in-process against the real Redis)."""

    async def get() -> Any:
        resp = await api["client"].get(path)
        assert resp.status == 200, await resp.text()
        return await resp.json()

    return api["loop"].run_until_complete(get())


def _served(api: dict[str, Any], path: str) -> list[dict]:
    """The items of one API answer."""
    return _answer(api, path)["items"]


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


def _wait_until_hidden(api, user: str, item: str, timeout_s: float) -> None:
    """Returns once ``item`` has left the user's served list (fails after ``timeout_s``)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if item not in [i["item_id"] for i in _served(api, f"/recommendations/{user}?n=20")]:
            return
        time.sleep(0.02)
    pytest.fail(f"{item} still served to {user} {timeout_s} s after it was hidden")


def _stack_with_catalog(settings, start_worker, wait_for, env_for, produce) -> tuple[Any, ...]:
    """A real worker that has processed the synthetic stream and mirrored its catalog: the
    worker, the producer's environment, the catalog by id, a Redis client and the keys."""
    ensure_topics(settings)
    worker = start_worker(settings)
    env = env_for(settings)
    produce(env, "--generate", str(EVENTS), "--seed", str(SEED))
    out = produce(env, "--items", "--generate", str(EVENTS), "--seed", str(SEED))
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
    return worker, env, catalog, client, keys


def test_catalog_titles_hidden_items_and_tombstones_reach_redis_and_the_api(
    settings, start_worker, wait_for, env_for, api, produce
):
    worker, env, catalog, client, keys = _stack_with_catalog(
        settings, start_worker, wait_for, env_for, produce
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

    # Hidden: gone from what the API serves once the worker has taken the record (a deadline,
    # not a timing claim: tests assert behaviour, bench/ measures speed).
    target = served[0]["item_id"]
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap.split(","))
    producer.send(settings.topic_items, key=b"bad", value=b'{"item_id": "bad"}')  # no title
    for key, value in item_messages([catalog[target]], hide=[target]):
        producer.send(settings.topic_items, key=key, value=value)
    producer.flush()
    _wait_until_hidden(api, user, target, timeout_s=60.0)
    producer.close()
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
    produce(env, "--items", "--delete", other)
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


def test_exclude_and_category_filter_a_real_workers_list_and_fill_from_trending(
    settings, start_worker, wait_for, env_for, api, produce
):
    worker, _, catalog, client, keys = _stack_with_catalog(
        settings, start_worker, wait_for, env_for, produce
    )
    user = next(keys.user_from_recs_key(k.decode()) for k in client.scan_iter(keys.recs_pattern))
    cached = UserRecs.from_json(client.get(keys.recs(user)))
    listed = [r.item_id for r in cached.items]
    reasons = {r.item_id: r.reason for r in cached.items}
    assert len(listed) == 20 and cached.recent

    # exclude=: never served, the rest of the list in order
    got = _served(api, f"/recommendations/{user}?n=5&exclude={listed[0]}&exclude={listed[3]}")
    assert [i["item_id"] for i in got] == [listed[j] for j in (1, 2, 4, 5, 6)]

    # The trending head as Redis holds it, in the API's order (forward score, then id).
    head = client.zrevrange(keys.trending, 0, FILL_DEPTH - 1, withscores=True)
    trending = [m.decode() for m, _ in sorted(head, key=lambda p: (-p[1], p[0]))]

    def fill(category: str, skip: set[str]) -> list[str]:
        """The category's trending items not in ``skip``, in order."""
        return [t for t in trending if category in catalog[t].categories and t not in skip]

    # The category of the user's most trending recent item: the fill must pass over that
    # item (she consumed it) and over the first one it would serve, hidden through the worker.
    recent = min((t for t in cached.recent if t in trending), key=trending.index)
    category = catalog[recent].categories[0]
    kept = [i for i in listed if category in catalog[i].categories]
    hidden = fill(category, set(cached.recent) | set(kept))[0]
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap.split(","))
    for key, value in item_messages([catalog[hidden]], hide=[hidden]):
        producer.send(settings.topic_items, key=key, value=value)
    producer.close()
    wait_for(lambda: client.sismember(keys.hidden_items, hidden), 30, "the hide", worker.log_tail)
    never = set(cached.recent) | {hidden}

    # category=: the list's items of the category, then trending in it up to n
    reach = fill(category, set(kept)).index(recent)  # where the consumed item would be
    n = len(kept) + max(reach + 1, 3)
    expected = kept + fill(category, never | set(kept))[: n - len(kept)]
    assert len(expected) == n, "the synthetic stream trends in every cluster"
    got = _served(api, f"/recommendations/{user}?n={n}&category={category}")
    assert [i["item_id"] for i in got] == expected
    filled = [f"trending in {category}"] * (n - len(kept))
    # The worker stores a reason with the item id it names; the API puts that item's title in
    # at read time (every record is mirrored here). Compared with the stored reasons, the check
    # failed whenever the picked user's list kept an item of the category with a personal
    # reason and passed otherwise (which user SCAN yields first varies from run to run).
    titles = {item_id: record.title for item_id, record in catalog.items()}
    assert [i["reason"] for i in got] == [titled(reasons[i], titles) for i in kept] + filled
    assert all(category in i["categories"] for i in got)

    # The filters empty the list: trending in the category only, never an excluded item.
    excluded = kept + fill(category, never | set(kept))[:2]
    query = f"n=4&category={category}&exclude={','.join(excluded)}"
    got = _served(api, f"/recommendations/{user}?{query}")
    assert [i["item_id"] for i in got] == fill(category, never | set(excluded))[:4]
    assert {i["reason"] for i in got} == {f"trending in {category}"}

    # An unknown user gets the same filters on the trending fallback (no history to leave out).
    got = _served(api, f"/recommendations/nobody-here?n=3&category={category}")
    assert [i["item_id"] for i in got] == fill(category, {hidden})[:3]
    body = _answer(api, f"/recommendations/{user}?category=no-such-category")
    assert body["items"] == [] and "no item of category 'no-such-category'" in body["empty_reason"]
    worker.assert_alive()
