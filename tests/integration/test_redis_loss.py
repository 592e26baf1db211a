"""Redis SIGKILLed under a running worker, on a redis-server of the test's own.

(a) Restarted with its data (append-only file): the worker holds its batches while Redis is
down and goes on once it is back; every event is counted exactly once and nothing is rebuilt.
(b) Restarted empty: the worker notices (the generation marker is gone) and rebuilds from its
tables the item norms, neighbour and successor lists, trending's members and the users' lists
(through the live scoring), with the rankers' checkpoints and the counted marks from memory;
the counters start again from zero and count exactly from there (docs/stream.md, "Redis lost
its data").
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis

from models.datasets import SyntheticConfig, generate_synthetic
from models.online.stream import StreamRanker
from models.online.stream.deltas import MAX_SUCCESSORS, NEIGHBORS_M, published_lists
from models.online.stream.partitions import key_partition
from stream_app.cache import CacheKeys, UserRecs
from stream_app.cache.base import decode_neighbors, encode_neighbors
from stream_app.cache.keys import counted_marks
from stream_app.kafka.admin import ensure_topics
from stream_app.settings import Settings
from stream_app.worker.online_scorer import CF_VERSION

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

SEED = 23
N_EVENTS = 3000


def _events(client: redis.Redis, keys: CacheKeys) -> int:
    try:
        return int(client.get(keys.stat("events")) or 0)
    except redis.RedisError:
        return -1


def _worker_on_private_redis(
    settings: Settings,
    private_redis: Any,
    data_dir: Path,
    appendonly: bool,
    start_worker: Callable[[Settings], Any],
    wait_for: Callable[..., None],
) -> tuple[Settings, redis.Redis, CacheKeys, Any]:
    """A worker on the test's own Redis (started with ``data_dir``), once it has set the
    first generation marker: the settings, a client, the keys and the worker."""
    private_redis.start(data_dir, appendonly=appendonly)
    settings = replace(settings, redis_url=private_redis.url)
    ensure_topics(settings)
    client = redis.Redis.from_url(settings.redis_url)
    keys = CacheKeys(settings.redis_key_prefix)
    worker = start_worker(settings)
    p = settings.event_partitions
    wait_for(lambda: _rebuilt(client, keys, None, p), 120, "a first marker", worker.log_tail)
    return settings, client, keys, worker


def _generated(n: int, rate: int, seed: int = SEED) -> tuple[str, ...]:
    """``streamrec produce`` arguments: ``n`` synthetic events at ``rate`` per second."""
    return ("--seed", str(seed), "--generate", str(n), "--rate", str(rate))


def test_redis_killed_and_restarted_with_its_data_loses_no_event(
    settings, private_redis, start_worker, wait_for, env_for, tmp_path, producing
):
    settings, client, keys, worker = _worker_on_private_redis(
        settings, private_redis, tmp_path / "redis-a", True, start_worker, wait_for
    )
    producer = producing(env_for(settings), *_generated(N_EVENTS, rate=400))
    wait_for(lambda: _events(client, keys) >= 600, 120, "600 events counted", worker.log_tail)
    token = client.hget(keys.generation, "token")
    private_redis.kill()
    time.sleep(12)  # longer than the client's own retries (~3.5 s a call): batches are held
    worker.assert_alive()
    private_redis.start(tmp_path / "redis-a", appendonly=True)
    out, _ = producer.communicate(timeout=120)
    assert producer.returncode == 0, out
    wait_for(
        lambda: _events(client, keys) >= N_EVENTS,
        180,
        f"all {N_EVENTS} events counted after Redis came back",
        lambda: f"events={_events(client, keys)}\n{worker.stacks()}",
    )
    time.sleep(3)  # a double count would show up now
    assert _events(client, keys) == N_EVENTS
    worker.assert_alive()
    log = worker.log_path.read_text(errors="replace")
    # the outage was seen: by a batch held, or by one that found the marks unreadable
    seen = ("Redis unavailable: batch of", "high-water marks unavailable")
    assert any(line in log for line in seen), worker.log_tail()
    assert client.hget(keys.generation, "token") == token  # its data survived: no rebuild
    assert log.count("rebuilt users") == 1  # the new Redis' first, over empty tables
    assert worker.stop() == 0, worker.log_tail()


def _snapshot(client: redis.Redis, keys: CacheKeys, settings) -> dict:
    """What the item side and the user side published, keyed for comparison."""
    prefix = settings.redis_key_prefix
    lists = {}
    for kind in ("neighbors", "successors"):
        names = sorted(k.decode() for k in client.scan_iter(f"{prefix}:{kind}:*", count=1000))
        lists[kind] = dict(zip(names, client.mget(names), strict=True)) if names else {}
    p = settings.event_partitions
    return {
        **lists,
        "norms": client.hgetall(keys.item_norms),
        "trending": {m.decode() for m in client.zrange(keys.trending, 0, -1)},
        "users": {
            keys.user_from_recs_key(k.decode()) for k in client.scan_iter(f"{prefix}:recs:*")
        },
        "marks": client.hgetall(keys.hwm(counted_marks(settings.topic_events))),
        "rankers": {
            part: StreamRanker.from_json(raw).n_updates
            for part, raw in enumerate(client.mget([keys.ranker(q) for q in range(p)]))
            if raw is not None
        },
    }


def _rebuilt(client: redis.Redis, keys: CacheKeys, old_token: bytes, partitions: int) -> bool:
    try:
        fields = client.hgetall(keys.generation)
    except redis.RedisError:
        return False
    token = fields.get(b"token")
    return (
        token not in (None, old_token)
        and all(fields.get(f"users:{p}".encode()) == token for p in range(partitions))
    )  # fmt: skip


def test_a_new_redis_gets_its_marker_before_the_first_batch_writes(
    settings, private_redis, start_worker, wait_for, env_for, tmp_path, producing
):
    # The timer's checks are off for the whole test (an hour apart): only the check before the
    # live path's first batch can set the marker. It sets it over empty tables (nothing
    # rebuilt), so a new Redis is never taken for one that lost its data once events flow
    # (trending re-seeded with all-time norms). Events are produced at once, not after a marker.
    private_redis.start(tmp_path / "redis-new", appendonly=False)
    settings = replace(settings, redis_url=private_redis.url, cache_check_s=3600.0)
    ensure_topics(settings)
    client = redis.Redis.from_url(settings.redis_url)
    keys = CacheKeys(settings.redis_key_prefix)
    worker = start_worker(settings)
    producer = producing(env_for(settings), *_generated(N_EVENTS, rate=2000))
    out, _ = producer.communicate(timeout=120)
    assert producer.returncode == 0, out
    wait_for(lambda: _events(client, keys) >= N_EVENTS, 180, "every event", worker.log_tail)
    assert _rebuilt(client, keys, None, settings.event_partitions)
    log = worker.log_tail(400)
    parts = list(range(settings.event_partitions))
    for stage in ("norms", "items", "users"):
        assert f"rebuilt {stage} of partitions {parts}: 0 keys" in log, stage
    assert log.count("Redis holds no generation marker") == 1


def test_redis_restarted_empty_is_rebuilt_from_the_tables(
    settings, private_redis, start_worker, wait_for, env_for, tmp_path, producing
):
    # A new Redis: the worker creates the marker and "rebuilds" its empty tables, before any
    # event, so what is compared below was published by the live path alone.
    settings, client, keys, worker = _worker_on_private_redis(
        settings, private_redis, tmp_path / "redis-b1", False, start_worker, wait_for
    )
    p = settings.event_partitions
    assert "rebuilt users of partitions [0, 1, 2, 3]: 0 keys" in worker.log_tail(200)
    producer = producing(env_for(settings), *_generated(N_EVENTS, rate=2000))
    out, _ = producer.communicate(timeout=120)
    assert producer.returncode == 0, out
    events = generate_synthetic(SyntheticConfig(seed=SEED).resized(N_EVENTS)).events
    items = sorted({e.item_id for e in events})
    wait_for(lambda: _events(client, keys) >= N_EVENTS, 180, "every event", worker.log_tail)
    wait_for(
        lambda: None not in client.hmget(keys.item_norms, items),
        60,
        "the item side to publish every item",
        worker.log_tail,
    )
    time.sleep(2 * settings.item_batch_delay_s + 1)  # the last item batch is published
    before = _snapshot(client, keys, settings)
    token = client.hget(keys.generation, "token")
    assert before["users"] and before["rankers"] and before["neighbors"]
    private_redis.kill()
    private_redis.start(tmp_path / "redis-b2", appendonly=False)  # empty
    wait_for(
        lambda: _rebuilt(client, keys, token, p),
        120,
        "the worker to rebuild every partition",
        worker.log_tail,
    )
    worker.assert_alive()
    after = _snapshot(client, keys, settings)
    _check_lists(before, after, settings)
    _check_rebuilt(before, after, events, client, keys)
    # The counters start again from zero, and count exactly from there.
    assert _events(client, keys) == 0
    more = producing(env_for(settings), *_generated(300, rate=1000, seed=SEED + 1))
    out, _ = more.communicate(timeout=120)
    assert more.returncode == 0, out
    wait_for(lambda: _events(client, keys) >= 300, 120, "300 more events", worker.log_tail)
    time.sleep(2)
    assert _events(client, keys) == 300
    # The force switch: every partition rebuilt again, on an intact cache, changing no count.
    token = client.hget(keys.generation, "token")
    forced = subprocess.run(
        [sys.executable, "-m", "stream_app.cli", "rebuild-cache", "--wait", "60"],
        env=env_for(settings), capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert forced.returncode == 0, forced.stdout + forced.stderr + worker.log_tail()
    assert "rebuilt every partition" in forced.stdout
    assert _rebuilt(client, keys, token, p) and _events(client, keys) == 300
    assert worker.stop() == 0, worker.log_tail()


def _table_rows(settings) -> dict[str, dict]:
    """The ``item_stats`` table as its changelog holds it (the newest row of each item): the
    tables' data, read without the worker."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        f"{settings.app_id}-item_stats-changelog",
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
        group_id=None,
    )
    try:
        return {m.key.decode(): json.loads(m.value) for m in consumer if m.value is not None}
    finally:
        consumer.close()


def _check_lists(before, after, settings) -> None:
    """The item side's keys hold what its table holds: the lists a batch touching every item
    would publish now (``published_lists``, the live path's own function). Before the loss a
    list could be older (recomputed only when its item is touched, with the norms of that
    moment, leaving out items without one yet): the same items have lists, and a list short of
    the cut names at least the items it named."""
    rows = _table_rows(settings)
    norms = {item: float(row["n"]) for item, row in rows.items()}
    near, nexts = published_lists(rows, norms, NEIGHBORS_M, MAX_SUCCESSORS)
    prefix = settings.redis_key_prefix
    assert after["neighbors"] == {
        f"{prefix}:neighbors:{i}": encode_neighbors(v) for i, v in near.items()
    }
    assert after["successors"] == {
        f"{prefix}:successors:{i}": encode_neighbors(v) for i, v in nexts.items()
    }
    assert after["norms"] == before["norms"]
    assert after["successors"] == before["successors"]
    assert after["neighbors"].keys() == before["neighbors"].keys()
    for key, raw in before["neighbors"].items():
        old, new = decode_neighbors(raw), decode_neighbors(after["neighbors"][key])
        if len(new) < NEIGHBORS_M:
            assert {i for i, _ in old} <= {i for i, _ in new}, key


def _check_rebuilt(before, after, events, client, keys) -> None:
    """The rebuilt Redis holds what the tables hold: see the module docstring."""
    assert after["trending"] == before["trending"]  # members; the scores are approximated
    assert after["marks"] == before["marks"]
    assert after["rankers"] == before["rankers"]  # from memory, not restarted from zero
    assert after["users"] == before["users"]
    seen: dict[str, set[str]] = {}
    for e in events:
        seen.setdefault(e.user_id, set()).add(e.item_id)
    ranker = StreamRanker.from_json(client.get(keys.ranker(0))).version.split("@")[0]
    for user in sorted(after["users"]):
        recs = UserRecs.from_json(client.get(keys.recs(user)))
        part = key_partition(user, 4)
        assert recs.model_versions == {
            "cf": CF_VERSION,
            "ranker": f"{ranker}@p{part}:{after['rankers'][part]}",
        }, (user, recs.model_versions)
        assert recs.items and not {r.item_id for r in recs.items} & seen[user], user
