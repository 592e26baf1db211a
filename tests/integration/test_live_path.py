"""The live path end to end: real producer -> real Kafka -> real worker process -> real Redis."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections import defaultdict
from dataclasses import replace

import pytest
import redis

from models.datasets import SyntheticConfig, generate_synthetic
from models.online.stream import RANKER_NAME
from models.online.stream.reasons import reason_source
from stream_app.cache import CacheKeys, UserRecs
from stream_app.cache.telemetry import TelemetryKeys
from stream_app.cli.produce import malformed_messages
from stream_app.kafka.admin import ensure_topics
from stream_app.worker.online_scorer import CF_VERSION

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SEED = 7


def _stats(client: redis.Redis, keys: CacheKeys) -> dict[str, int]:
    names = ("events", "dlq", "batches")
    values = client.mget([keys.stat(n) for n in names])
    return {n: int(v or 0) for n, v in zip(names, values, strict=True)}


def _seen_by_user(n_events: int) -> dict[str, set[str]]:
    """What each user saw in ``streamrec produce --generate N --seed SEED`` (same generator)."""
    dataset = generate_synthetic(SyntheticConfig(seed=SEED).resized(n_events))
    seen: dict[str, set[str]] = defaultdict(set)
    for event in dataset.events:
        seen[event.user_id].add(event.item_id)
    return seen


def _is_cf_versions(versions: dict[str, str]) -> bool:
    """The CF model and the ranker with its partitions' update counts, no session model."""
    return (
        set(versions) == {"cf", "ranker"}
        and versions["cf"] == CF_VERSION
        and versions["ranker"].startswith(RANKER_NAME + "@p")
    )


def _check_recs(client, keys, settings, seen: dict[str, set[str]]) -> int:
    """Every user has a list that excludes what they saw, with reasons that name a seen item or
    say "trending now"; returns how many users got at least one neighbour-based item."""
    # The worker excludes the last history_len distinct items; the data must fit for the check
    # "excludes everything the user saw" to be the right one.
    assert max(len(items) for items in seen.values()) <= settings.history_len
    missing, overlapping = [], []
    personal = 0
    for user, items in seen.items():
        raw = client.get(keys.recs(user))
        if raw is None:
            missing.append(user)
            continue
        recs = UserRecs.from_json(raw)
        assert recs.user_id == user
        assert 0 < len(recs.items) <= settings.top_n
        for r in recs.items:
            # a personal reason names one of the user's own items (a neighbour's source, or the
            # last item a transition starts from), in the verb of her act on it
            source = reason_source(r.reason)
            assert r.reason == "trending now" or source in items, r.reason
        personal += any(r.reason != "trending now" for r in recs.items)
        assert _is_cf_versions(dict(recs.model_versions)), recs.model_versions
        assert 0 < client.ttl(keys.recs(user)) <= settings.rec_ttl_s
        if {r.item_id for r in recs.items} & items:
            overlapping.append(user)
    assert not missing, f"{len(missing)} of {len(seen)} users lack recs, e.g. {missing[:5]}"
    assert not overlapping, f"recs include seen items for users {overlapping[:5]}"
    return personal


def test_every_user_gets_recommendations_excluding_what_they_saw(
    settings, start_worker, wait_for, env_for, produce
):
    ensure_topics(settings)
    worker = start_worker(settings)
    produce(env_for(settings), "--seed", str(SEED), "--generate", "2000")

    client = redis.Redis.from_url(settings.redis_url)
    keys = CacheKeys(settings.redis_key_prefix)
    wait_for(
        lambda: _stats(client, keys)["events"] >= 2000,
        120,
        "the worker to process 2,000 events",
        lambda: f"stats={_stats(client, keys)}\n{worker.log_tail()}",
    )
    worker.assert_alive()
    stats = _stats(client, keys)
    assert stats["events"] == 2000 and stats["dlq"] == 0
    # batch_max_events bounds a batch
    assert stats["batches"] >= -(-2000 // settings.batch_max_events)
    seen = _seen_by_user(2000)
    assert len(seen) >= 40
    _check_recs(client, keys, settings, seen)
    items = sorted(set().union(*seen.values()))
    assert client.zcard(keys.trending) == len(items)

    # The item side runs behind the user side (one hop through the deltas topic): every item
    # got a delta (its own norm), so every item's neighbour list is eventually published.
    def published() -> int:
        return sum(raw is not None for raw in client.mget([keys.neighbors(i) for i in items]))

    wait_for(
        lambda: published() == len(items),
        60,
        "every item's neighbours",
        lambda: f"{published()} of {len(items)} published",
    )

    # Telemetry (stream_app.worker.telemetry) for the read API: HitRate/MRR trials, one freshness
    # sample per event, and this worker's model versions in the registry.
    tkeys = TelemetryKeys(keys)
    hitrate = {k.decode(): float(v) for k, v in client.hgetall(tkeys.hitrate).items()}
    # one trial per event on an item new to its user (a repeat is no trial, as offline)
    first_seen = sum(len(user_items) for user_items in seen.values())
    assert first_seen < 2000  # the stream has repeats, so the rule is exercised
    assert hitrate["trials"] == first_seen and 0 <= hitrate.get("hits", 0) <= first_seen
    # MRR@10's reciprocal-rank sum: each hit adds 1/rank <= 1, each miss nothing
    assert hitrate.get("hits", 0) / 10 <= hitrate.get("rr", 0.0) <= hitrate.get("hits", 0)
    freshness = client.hgetall(tkeys.freshness)
    assert sum(int(v) for k, v in freshness.items() if k != b"sum_ms") == 2000
    (worker_id,) = [w.decode() for w in client.zrange(tkeys.workers, 0, -1)]
    assert worker_id.startswith(settings.app_id)
    assert _is_cf_versions(json.loads(client.hget(tkeys.worker(worker_id), "versions")))
    # What `streamrec watch` reports as lag: 0 once the worker committed its offsets.
    from kafka.admin import KafkaAdminClient

    from stream_app.kafka.admin import consumer_lag

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap.split(","))
    try:
        wait_for(
            lambda: consumer_lag(admin, settings.app_id, settings.topic_events) == 0,
            60,
            "the worker's committed offsets to reach the end of the topic",
            lambda: f"lag={consumer_lag(admin, settings.app_id, settings.topic_events)}",
        )
    finally:
        admin.close()

    # The real model: a backlog is scored before the item side has published much, so replay
    # the same events once more; now most users' lists come from the published neighbours.
    produce(env_for(settings), "--seed", str(SEED), "--generate", "2000")
    wait_for(
        lambda: _stats(client, keys)["events"] >= 4000,
        120,
        "the worker to process the replay",
        lambda: f"stats={_stats(client, keys)}\n{worker.log_tail()}",
    )
    personal = _check_recs(client, keys, settings, seen)
    assert personal >= len(seen) // 2, f"only {personal} of {len(seen)} users got kNN items"
    assert worker.stop() == 0, worker.log_tail()


def test_malformed_events_land_in_the_dlq_while_good_ones_get_recommendations(
    settings, start_worker, wait_for, env_for, dead_letters, produce
):
    ensure_topics(settings)
    worker = start_worker(settings)
    produce(env_for(settings), "--seed", str(SEED), "--generate", "1000", "--invalid", "50")

    client = redis.Redis.from_url(settings.redis_url)
    keys = CacheKeys(settings.redis_key_prefix)
    wait_for(
        lambda: _stats(client, keys)["events"] >= 1000 and _stats(client, keys)["dlq"] >= 50,
        120,
        "1,000 good events processed and 50 dead letters",
        lambda: f"stats={_stats(client, keys)}\n{worker.log_tail()}",
    )
    worker.assert_alive()
    assert _stats(client, keys) | {"batches": 0} == {"events": 1000, "dlq": 50, "batches": 0}

    letters = dict(dead_letters(settings))

    sent = [value for _, _, value in malformed_messages(50)]
    assert len(letters) == 50  # one per bad message: keyed by where it was
    for key, letter in letters.items():
        assert letter["reason"], letter
        assert letter["topic"] == settings.topic_events
        assert 0 <= letter["partition"] < settings.event_partitions and letter["offset"] >= 0
        assert key == f"{letter['topic']}/{letter['partition']}/{letter['offset']}".encode()
    assert sorted(base64.b64decode(d["payload_b64"]) for d in letters.values()) == sorted(
        value[:65536] for value in sent
    )
    assert sorted(d["payload_size"] for d in letters.values()) == sorted(map(len, sent))
    reasons = {letter["reason"].split(":")[0] for letter in letters.values()}
    assert {"empty message value", "not valid UTF-8 JSON", "event must be a JSON object"} <= reasons

    _check_recs(client, keys, settings, _seen_by_user(1000))
    assert worker.stop() == 0, worker.log_tail()


def test_history_survives_a_worker_restart_through_the_changelog(
    settings, start_worker, wait_for, env_for, produce
):
    """Users' seen items come back from the table's changelog after a restart.

    The table is written per batch with the producer's partitioner (``use_partitioner``); if its
    changelog partitions did not line up with the events topic, the restarted worker would
    recover other partitions' users and recommend items these users already saw.
    """
    ensure_topics(settings)
    # Tiny top-N so exclusions matter: one event per user after the restart must still exclude
    # everything they saw before it.
    settings = replace(settings, top_n=3)
    worker = start_worker(settings)
    env = env_for(settings)
    produce(env, "--seed", str(SEED), "--generate", "1000")
    client = redis.Redis.from_url(settings.redis_url)
    keys = CacheKeys(settings.redis_key_prefix)
    wait_for(
        lambda: _stats(client, keys)["events"] >= 1000,
        120,
        "the first 1,000 events",
        lambda: worker.log_tail(),
    )
    assert worker.stop() == 0, worker.log_tail()

    seen = _seen_by_user(1000)
    last_ts = max(
        e.timestamp_ms for e in generate_synthetic(SyntheticConfig(seed=SEED).resized(1000)).events
    )
    # Second run: one event per user for an item they have not seen; everything else they saw
    # must still be excluded, which only the recovered history can know.
    all_items = sorted(set().union(*seen.values()))
    restarted = start_worker(settings)
    lines = []
    for user, items in sorted(seen.items()):
        fresh = next(i for i in all_items if i not in items)
        seen[user] = items | {fresh}
        lines.append(
            json.dumps(
                {
                    "user_id": user,
                    "item_id": fresh,
                    "event_type": "view",
                    "timestamp": last_ts + 60_000,
                }
            )
        )
    path = settings.state_path / "second.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    for user in seen:
        client.delete(keys.recs(user))
    produce(env, "--seed", str(SEED), "--dataset", str(path))
    wait_for(
        lambda: _stats(client, keys)["events"] >= 1000 + len(lines),
        120,
        "the events after the restart",
        lambda: restarted.log_tail(),
    )
    _check_recs(client, keys, settings, seen)
    assert restarted.stop() == 0, restarted.log_tail()


def test_worker_refuses_an_events_topic_with_another_partition_count(settings, env_for):
    """The history table is partitioned like the events topic; a mismatch must stop start-up."""
    ensure_topics(replace(settings, event_partitions=2))
    out = subprocess.run(
        [sys.executable, "-m", "stream_app.cli", "worker"],
        env=env_for(settings),  # event_partitions=4
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "has 2 partitions but STREAMREC_EVENT_PARTITIONS=4" in out.stderr


def test_worker_survives_an_unreachable_redis_and_keeps_dead_lettering(
    settings, start_worker, wait_for, env_for, produce, dead_letters
):
    """Redis down: the batch's bad events still go to the DLQ, the batch degrades and is held
    (logged, never dropped), the worker stays up, and SIGTERM still stops it cleanly.

    Why the whole backlog is one batch: a batch Redis cannot take is held, retried until
    Redis answers (docs/stream.md, "Redis never crashes the consumer"), and the user side takes
    no batch behind it, so only the held batch's dead letters can leave while Redis is down.
    With the 50 ms window the worker's first batch was whatever had reached it by then (all 205
    messages on an idle machine, a part of them under load or when the producer was still
    sending), and the bad messages behind it never came: the test failed half the time. Now
    the 205 messages are in the topic before the worker starts and its batch closes at exactly
    205 events (the window is only a deadline).
    """
    import socket

    n_good, n_bad = 200, 5
    # A local port nothing listens on, kept bound (never listening) for the whole test: a
    # connection is refused, no other process can start listening there, and the worker's
    # own connects cannot take it as their ephemeral port (a TCP self-connect would answer).
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        dead_port = dead.getsockname()[1]
        settings = replace(
            settings,
            redis_url=f"redis://127.0.0.1:{dead_port}/0",
            batch_max_events=n_good + n_bad,
            batch_max_delay_s=120.0,
        )
        ensure_topics(settings)
        backlog = ("--generate", str(n_good), "--invalid", str(n_bad))
        produce(env_for(settings), "--seed", str(SEED), *backlog)
        worker = start_worker(settings)

        wait_for(
            lambda: len(dead_letters(settings)) >= n_bad,
            180,
            "the dead letters",
            lambda: worker.log_tail(),
        )
        letters = [base64.b64decode(v["payload_b64"]) for _, v in dead_letters(settings)[:n_bad]]
        assert sorted(letters) == sorted(
            value[:65536] for _, _, value in malformed_messages(n_bad)
        ), worker.log_tail()
        wait_for(
            lambda: f"batch of {n_good} events held" in worker.log_path.read_text(errors="replace"),
            120,
            "the worker to log the degraded batch, held",
            lambda: worker.log_tail(),
        )
        assert "cache unavailable" in worker.log_path.read_text(errors="replace"), worker.log_tail()
        worker.assert_alive()
        assert "Traceback" not in worker.log_path.read_text(errors="replace"), worker.log_tail()
        assert worker.stop() == 0, worker.log_tail()
