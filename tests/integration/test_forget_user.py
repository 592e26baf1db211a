"""Forgetting a user on the real stack: `streamrec forget-user` (the real CLI, a subprocess) ->
the control topic -> a real worker -> no Redis key names her, the history changelog's latest
record for her key is a tombstone, and her next event starts a fresh history."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer

from stream_app.cache import CacheKeys, UserRecs
from stream_app.kafka.admin import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

HER = "forget-me-7f3a"
OTHERS = ["keep-u1", "keep-u2"]


def _event(user: str, item: str, ts: int) -> bytes:
    payload = {"user_id": user, "item_id": item, "event_type": "view", "timestamp": ts}
    return json.dumps(payload).encode()


def _send(settings, messages: list[tuple[str, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap.split(","), acks="all")
    for user, value in messages:
        producer.send(settings.topic_events, key=user.encode(), value=value)
    producer.flush(30)
    producer.close()


def _latest_changelog(settings) -> dict[bytes, bytes | None]:
    """key -> value of the newest record of each key in the history changelog (None: a
    tombstone), read from the beginning of every partition."""
    consumer = KafkaConsumer(
        f"{settings.app_id}-history-changelog",
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
    )
    latest: dict[bytes, bytes | None] = {}
    for record in consumer:
        latest[record.key] = record.value
    consumer.close()
    return latest


def _keys_naming(client: redis.Redis, user: str) -> list[bytes]:
    return [k for k in client.scan_iter(count=1000) if user.encode() in k]


def test_forget_user_removes_her_keys_and_history_and_her_next_event_starts_afresh(
    settings, start_worker, wait_for, env_for
):
    ensure_topics(settings)
    worker = start_worker(settings)
    client = redis.Redis.from_url(settings.redis_url)
    keys = CacheKeys(settings.redis_key_prefix)
    now = int(time.time() * 1000)
    good = [(u, _event(u, f"i{k}", now + k)) for k in range(4) for u in [HER, *OTHERS]]
    # a rejected event of hers: the dashboard's dead-letter journal shows its start
    bad = (HER, json.dumps({"user_id": HER, "event_type": "view"}).encode())
    _send(settings, [*good, bad])

    def events() -> int:
        return int(client.get(keys.stat("events")) or 0)

    def diagnostics() -> str:
        return f"events={events()} keys={_keys_naming(client, HER)}\n{worker.log_tail()}"

    wait_for(lambda: events() >= len(good), 120, "the events", diagnostics)
    wait_for(lambda: client.get(keys.stat("dlq")) == b"1", 60, "the dead letter", diagnostics)
    assert _keys_naming(client, HER) == [keys.recs(HER).encode()]
    assert any(HER.encode() in e for e in client.lrange(keys.dead_letters, 0, -1))

    out = subprocess.run(
        [sys.executable, "-m", "stream_app.cli", "forget-user", HER, "--wait", "90"],
        env=env_for(settings),
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert out.returncode == 0, f"{out.stdout}\n{out.stderr}\n{worker.log_tail()}"
    assert f"forgotten: {HER}" in out.stdout

    # No key names her, nor a journal entry; the others keep theirs.
    assert _keys_naming(client, HER) == []
    assert not any(HER.encode() in e for e in client.lrange(keys.dead_letters, 0, -1))
    assert all(client.exists(keys.recs(u)) for u in OTHERS)
    assert client.get(keys.stat("forgotten")) == b"1"
    # Her history row's newest changelog record is a tombstone (compaction drops the rest).
    latest = _latest_changelog(settings)
    assert HER.encode() in latest and latest[HER.encode()] is None
    assert all(json.loads(latest[u.encode()] or b"null") for u in OTHERS)

    # Her next event starts a fresh history: the list follows from that event alone.
    _send(settings, [(HER, _event(HER, "fresh", now + 100))])
    wait_for(lambda: client.exists(keys.recs(HER)), 60, "her new list", diagnostics)
    assert UserRecs.from_json(client.get(keys.recs(HER))).recent == ("fresh",)
    wait_for(
        lambda: _latest_changelog(settings).get(HER.encode()) == b'["fresh"]',
        60,
        "her fresh history row",
        lambda: f"{_latest_changelog(settings).get(HER.encode())!r}\n{worker.log_tail()}",
    )
    worker.assert_alive()
