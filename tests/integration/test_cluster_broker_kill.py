"""One broker of the three-broker cluster SIGKILLed mid-stream: with replication factor 3,
min.insync.replicas 2 and acks=all, the two brokers left take over its partitions (and the
worker group's coordination, when it held that), the same worker process counts every event
exactly once *while the broker stays dead*, and nobody restarts anything by hand. The broker is
restarted at the end (it rejoins from its own log) and the group's lag returns to 0.

The cluster is the project's own (``infra/kafka_cluster.sh``, started here if it is not up and
left up like ``make stack-up``'s stack); the test's topics and group are its own and deleted."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis

from stream_app.cache import CacheKeys
from stream_app.kafka.admin import consumer_lag, ensure_topics
from stream_app.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
SEED, N_EVENTS, RATE = 23, 3000, 300


class KafkaCluster:
    """``infra/kafka_cluster.sh`` as the user runs it, on the ports and state dir the
    environment names (KAFKA_CLUSTER_PORT, KAFKA_CLUSTER_STATE_DIR; CI may move them)."""

    def __init__(self) -> None:
        self.env = {**os.environ, "PY": sys.executable}

    def run(self, *args: str) -> str:
        out = subprocess.run(
            ["bash", str(REPO / "infra/kafka_cluster.sh"), *args],
            env=self.env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert out.returncode == 0, f"kafka_cluster.sh {' '.join(args)}:\n{out.stdout}{out.stderr}"
        return out.stdout

    @property
    def bootstrap(self) -> str:
        return self.run("bootstrap").strip()

    def kill(self, node: int) -> None:
        """SIGKILL node ``node`` (its broker id): no shutdown, no flush."""
        os.kill(int(self.run("pid", str(node))), signal.SIGKILL)


@pytest.fixture
def cluster_settings(settings: Settings) -> Iterator[Settings]:
    """The test's isolated settings on the cluster, replicated 3 ways; its topics (Faust's
    leader topic included, it starts with the app id) are deleted afterwards."""
    cluster = KafkaCluster()
    cluster.run("up")  # idempotent: starts only the nodes that are down
    replicated = replace(settings, kafka_bootstrap=cluster.bootstrap, replication_factor=3)
    yield replicated
    with contextlib.suppress(Exception):
        cluster.run("up")  # the killed broker back even when the test failed before its restart
        admin = _admin(replicated)
        admin.delete_topics([t for t in admin.list_topics() if t.startswith(settings.app_id)])
        admin.close()


def _admin(settings: Settings):
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap.split(","))


def _events(client: redis.Redis, keys: CacheKeys) -> int:
    return int(client.get(keys.stat("events")) or 0)


def _lag(settings: Settings) -> int | None:
    try:
        admin = _admin(settings)
    except Exception:  # no broker answered this time: unknown
        return None
    try:
        return consumer_lag(admin, settings.app_id, settings.topic_events)
    finally:
        admin.close()


def _events_topic(settings: Settings) -> tuple[dict[int, int], str]:
    """(partition -> leader broker, the topic's min.insync.replicas) of the events topic."""
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = _admin(settings)
    try:
        (topic,) = admin.describe_topics([settings.topic_events])
        leaders = {p["partition_index"]: p["leader_id"] for p in topic["partitions"]}
        assert all(len(p["replica_nodes"]) == 3 for p in topic["partitions"]), topic
        resource = ConfigResource(ConfigResourceType.TOPIC, settings.topic_events)
        configs = admin.describe_configs([resource])["topic"][settings.topic_events]
        return leaders, configs["min.insync.replicas"]["value"]
    finally:
        admin.close()


def _coordinator(settings: Settings) -> int:
    """The broker coordinating the worker's group: the leader of the ``__consumer_offsets``
    partition Kafka picks for the group id: ``Utils.abs(groupId.hashCode()) % partitions``,
    with Java's 32-bit signed ``String.hashCode``."""
    h = 0
    for char in settings.app_id:
        h = (31 * h + ord(char)) & 0xFFFFFFFF
    signed = h - (1 << 32) if h >= 1 << 31 else h
    index = 0 if signed == -(1 << 31) else abs(signed)  # Utils.abs: MIN_VALUE gives 0
    admin = _admin(settings)
    try:
        (offsets,) = admin.describe_topics(["__consumer_offsets"])
    finally:
        admin.close()
    leaders = {p["partition_index"]: p["leader_id"] for p in offsets["partitions"]}
    return leaders[index % len(leaders)]


def _produced(settings: Settings) -> int:
    """Messages in the events topic (end offsets summed): what Kafka kept."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap.split(","))
    try:
        parts = consumer.partitions_for_topic(settings.topic_events) or set()
        tps = [TopicPartition(settings.topic_events, p) for p in parts]
        return sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close()


def test_a_broker_killed_mid_stream_loses_nothing_and_the_worker_goes_on(
    cluster_settings: Settings,
    start_worker: Callable[[Settings], Any],
    wait_for: Callable[..., None],
    producing: Callable[..., subprocess.Popen],
    env_for: Callable[[Settings], dict[str, str]],
) -> None:
    settings = cluster_settings
    ensure_topics(settings)
    leaders, min_insync = _events_topic(settings)
    assert min_insync == "2"
    client = redis.Redis.from_url(settings.redis_url)
    keys = CacheKeys(settings.redis_key_prefix)
    worker = start_worker(settings)
    wait_for(lambda: client.exists(keys.generation), 120, "the worker's start", worker.log_tail)
    producer = producing(
        env_for(settings), "--seed", str(SEED), "--generate", str(N_EVENTS), "--rate", str(RATE)
    )
    try:
        _kill_a_broker_mid_stream(settings, client, keys, worker, producer, leaders, wait_for)
    finally:
        if producer.poll() is None:  # a failure above: no producer left behind
            producer.kill()
            producer.wait(10)
    worker.assert_alive()  # the same process, never restarted
    assert _produced(settings) == N_EVENTS  # Kafka kept every acknowledged event, none twice
    KafkaCluster().run("up")  # the broker again, from its own log
    wait_for(lambda: _lag(settings) == 0, 120, "the group's lag to return to 0", worker.log_tail)
    assert _events(client, keys) == N_EVENTS  # none lost, none counted twice
    worker.assert_alive()
    assert worker.stop() == 0, worker.log_tail()


def _kill_a_broker_mid_stream(
    settings: Settings,
    client: redis.Redis,
    keys: CacheKeys,
    worker: Any,
    producer: subprocess.Popen,
    leaders: dict[int, int],
    wait_for: Callable[..., None],
) -> None:
    """SIGKILL a broker once 500 events are counted; every event is sent and counted without it."""
    wait_for(lambda: _events(client, keys) >= 500, 120, "500 events counted", worker.log_tail)
    # The group's coordinator when it also leads events partitions (the hardest broker to lose:
    # the group and some of its input move at once), else the broker leading the most of them.
    victim = _coordinator(settings)
    if victim not in leaders.values():
        victim = max(set(leaders.values()), key=list(leaders.values()).count)
    KafkaCluster().kill(victim)
    at_kill = _events(client, keys)
    assert at_kill < N_EVENTS, "the stream ended before the kill: raise N_EVENTS"
    out, _ = producer.communicate(timeout=180)
    assert producer.returncode == 0 and f"produced {N_EVENTS} events" in out, out
    wait_for(
        lambda: _events(client, keys) >= N_EVENTS,
        180,
        f"all {N_EVENTS} events counted with broker {victim} dead (from {at_kill} at the kill)",
        lambda: f"events={_events(client, keys)}\n{worker.stacks()}",
    )
