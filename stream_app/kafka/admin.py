"""The Kafka topics the stream app uses, created idempotently, and the consumer lag.

Topics are created up front, not left to broker auto-creation, because their shape matters:
``events`` needs exactly ``settings.event_partitions`` partitions (the worker's history table is
partitioned the same way, and changelog recovery relies on it), ``items`` must be compacted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from stream_app.kafka.clients import kafka_python_options
from stream_app.settings import Settings

log = logging.getLogger(__name__)

#: Kafka's TOPIC_ALREADY_EXISTS error code: "already exists" is success for us.
TOPIC_ALREADY_EXISTS = 36


class TopicMismatch(RuntimeError):
    """An existing topic has a shape the app cannot work with (e.g. another partition count)."""


class ReplicationMismatch(TopicMismatch):
    """``STREAMREC_REPLICATION_FACTOR`` asks for more replicas than the cluster has brokers:
    said at start-up in one line, instead of Kafka's INVALID_REPLICATION_FACTOR per topic."""


def durability_configs(settings: Settings) -> dict[str, str]:
    """Topic configs every topic of ours carries: ``min.insync.replicas`` (with the producers'
    ``acks=all``, a write is acknowledged once a majority holds it). Said even where it is 1:
    a topic left to the broker's default would refuse every write on a cluster whose default
    is above its replication factor.

    >>> durability_configs(Settings(replication_factor=3))
    {'min.insync.replicas': '2'}
    >>> durability_configs(Settings())
    {'min.insync.replicas': '1'}
    """
    return {"min.insync.replicas": str(settings.min_insync_replicas)}


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str] = field(default_factory=dict)

    def as_request(self) -> dict[str, object]:
        """The per-topic options kafka-python's ``create_topics`` takes."""
        return {
            "num_partitions": self.partitions,
            "replication_factor": self.replication_factor,
            "configs": dict(self.configs),
        }


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The app's topics, its internal ones (the worker's item-deltas topic and table changelogs)
    included.

    The internal topics are created here too, with ``event_partitions`` partitions, because a
    worker can touch them before Faust creates them, and broker auto-creation would give them
    the broker's default of 1 partition: table state would then not follow its partitions.

    >>> [(t.name, t.partitions, t.configs.get("cleanup.policy")) for t in topic_specs(Settings())]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('events', 4, None), ('events.dlq', 1, None), ('items', 1, 'compact'),
     ('model-updates', 1, None), ('control', 4, None), ('streamrec-item-deltas', 4, None),
     ('streamrec-history-changelog', 4, 'compact'),
     ('streamrec-item_stats-changelog', 4, 'compact')]
    """
    rf, durable = settings.replication_factor, durability_configs(settings)
    return [
        # Keyed by user_id: one user's events stay in order on one partition.
        TopicSpec(settings.topic_events, settings.event_partitions, rf, dict(durable)),
        # Low volume by design; one partition keeps the dead letters in arrival order.
        TopicSpec(settings.topic_dlq, 1, rf, dict(durable)),
        # Latest attributes per item_id: compaction keeps one record per key forever.
        TopicSpec(settings.topic_items, 1, rf, {"cleanup.policy": "compact", **durable}),
        TopicSpec(settings.topic_model_updates, 1, rf, dict(durable)),
        # Keyed by user_id with the events' partition count: a command for a user lands on the
        # partition number of her events, which Faust assigns to the worker that owns her
        # history (co-partitioned topics go to the same worker).
        TopicSpec(settings.topic_control, settings.event_partitions, rf, dict(durable)),
        *internal_topic_specs(settings),
    ]


def internal_topic_specs(settings: Settings) -> list[TopicSpec]:
    """The worker's internal topics (names as Faust builds them from the app id)."""
    rf, n = settings.replication_factor, settings.event_partitions
    durable = durability_configs(settings)
    compact = {"cleanup.policy": "compact", **durable}
    return [
        TopicSpec(settings.topic_item_deltas, n, rf, dict(durable)),
        TopicSpec(f"{settings.app_id}-history-changelog", n, rf, dict(compact)),
        TopicSpec(f"{settings.app_id}-item_stats-changelog", n, rf, dict(compact)),
    ]


def quiet_kafka_client_logs(settings: Settings) -> None:
    """kafka-python logs every connection at INFO; keep those lines for DEBUG runs only."""
    if settings.log_level != "DEBUG":
        logging.getLogger("kafka").setLevel(logging.WARNING)


@contextmanager
def admin_client(settings: Settings, timeout_s: float = 30.0) -> Iterator[object]:
    """A kafka-python admin client on the configured bootstrap servers, closed afterwards."""
    from kafka.admin import KafkaAdminClient

    client = KafkaAdminClient(
        **kafka_python_options(settings.kafka),
        client_id=f"{settings.app_id}-admin",
        request_timeout_ms=int(timeout_s * 1000),
    )
    try:
        yield client
    finally:
        client.close()


def ensure_topics(
    settings: Settings, specs: list[TopicSpec] | None = None, timeout_s: float = 30.0
) -> dict[str, str]:
    """Create missing topics; return ``{topic: "created" | "exists"}``.

    Raises ``TopicMismatch`` when an existing ``events`` or ``control`` topic has another
    partition count than ``settings.event_partitions`` (the worker would mis-route its table,
    or a user's commands, otherwise).
    """
    from kafka.errors import for_code

    wanted = specs if specs is not None else topic_specs(settings)
    outcome: dict[str, str] = {}
    with admin_client(settings, timeout_s) as admin:
        _check_brokers(admin, settings, max(s.replication_factor for s in wanted))
        response = admin.create_topics(  # type: ignore[attr-defined]
            {spec.name: spec.as_request() for spec in wanted},
            timeout_ms=int(timeout_s * 1000),
            raise_errors=False,
        )
        for topic in response["topics"]:
            code = topic["error_code"]
            if code == 0:
                outcome[topic["name"]] = "created"
            elif code == TOPIC_ALREADY_EXISTS:
                outcome[topic["name"]] = "exists"
            else:
                error = for_code(code)
                raise RuntimeError(
                    f"creating topic {topic['name']!r} failed: {error.__name__}: "
                    f"{topic.get('error_message') or ''}"
                )
        described = _describe_when_ready(admin, [spec.name for spec in wanted], timeout_s)
        partitions = {t["name"]: len(t["partitions"]) for t in described}
    _warn_under_replicated(described, settings.replication_factor)
    internal = {spec.name for spec in internal_topic_specs(settings)}
    for spec in wanted:
        if spec.name in internal and partitions.get(spec.name) != spec.partitions:
            raise TopicMismatch(
                f"internal topic {spec.name!r} has {partitions.get(spec.name)} partitions, not "
                f"{spec.partitions}; delete it (its state is rebuilt) or use another "
                "STREAMREC_APP_ID"
            )
        keyed_by_user = {settings.topic_events: "EVENTS", settings.topic_control: "CONTROL"}
        if spec.name in keyed_by_user and partitions.get(spec.name) != spec.partitions:
            raise TopicMismatch(
                f"topic {spec.name!r} has {partitions.get(spec.name)} partitions but "
                f"STREAMREC_EVENT_PARTITIONS={spec.partitions}; use another topic name "
                f"(STREAMREC_TOPIC_{keyed_by_user[spec.name]}) or set the partition count to "
                "match"
            )
    return outcome


def _describe_when_ready(admin: object, names: list[str], timeout_s: float) -> list[dict]:
    """The topics described once every partition has a leader in the answering broker's view.

    Why not only kafka-python's ``wait_for_topics``: on a cluster each request may go to
    another broker, and one whose metadata lags a just-created topic describes it with no
    partitions, which read as a partition-count mismatch.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        described = admin.describe_topics(names)  # type: ignore[attr-defined]
        ready = {
            t["name"]
            for t in described
            if t["error_code"] == 0
            and t["partitions"]
            and all(p["leader_id"] >= 0 for p in t["partitions"])
        }
        if ready >= set(names) or time.monotonic() > deadline:
            return described
        time.sleep(0.2)


def _check_brokers(admin: object, settings: Settings, replication_factor: int) -> None:
    """Raise ``ReplicationMismatch`` when the cluster has fewer brokers than the replicas asked."""
    if replication_factor <= 1:
        return
    brokers = len(admin.describe_cluster()["brokers"])  # type: ignore[attr-defined]
    if brokers < replication_factor:
        raise ReplicationMismatch(
            f"STREAMREC_REPLICATION_FACTOR={replication_factor} but the Kafka cluster at "
            f"{settings.kafka_bootstrap} has {brokers} broker(s) up; start a cluster with as "
            "many (bash infra/kafka_cluster.sh up) or lower the replication factor"
        )


def _warn_under_replicated(described: list[dict], replication_factor: int) -> None:
    """An existing topic keeps the replication it was created with (Kafka does not change it
    on its own): say so once, at start-up, rather than let a broker loss surprise anyone."""
    for topic in described:
        replicas = min((len(p["replica_nodes"]) for p in topic["partitions"]), default=0)
        if 0 < replicas < replication_factor:
            log.warning(
                "topic %s has %d replica(s), not STREAMREC_REPLICATION_FACTOR=%d: it was created "
                "before; raise it with kafka-reassign-partitions",
                topic["name"],
                replicas,
                replication_factor,
            )


def total_lag(end_offsets: Mapping[int, int], committed: Mapping[int, int | None]) -> int:
    """Messages not yet committed by the group, summed over partitions.

    A partition the group never committed counts whole (its end offset), since the worker
    reads new groups from the earliest offset.

    >>> total_lag({0: 10, 1: 5}, {0: 7})
    8
    """
    return sum(max(end - (committed.get(p) or 0), 0) for p, end in end_offsets.items())


def consumer_lag(admin: object, group: str, topic: str) -> int | None:
    """The group's lag on ``topic`` via kafka-python's admin client; None if not knowable yet."""
    from kafka import TopicPartition
    from kafka.admin import OffsetSpec

    try:
        meta = admin.describe_topics([topic])  # type: ignore[attr-defined]
        partitions = [p["partition_index"] for p in meta[0]["partitions"]]
        if not partitions:  # no such topic (yet): unknown, not "no lag"
            return None
        tps = [TopicPartition(topic, p) for p in partitions]
        ends = admin.list_partition_offsets(  # type: ignore[attr-defined]
            dict.fromkeys(tps, OffsetSpec.LATEST)
        )
        offsets = admin.list_group_offsets({group: tps})  # type: ignore[attr-defined]
    except Exception as exc:  # the group may not exist yet; the watch must keep going
        log.debug("lag unknown: %r", exc)
        return None
    committed = {
        tp.partition: (om.offset if om is not None and om.offset >= 0 else None)
        for tp, om in offsets.get(group, {}).items()
    }
    return total_lag({tp.partition: ends[tp].offset for tp in tps}, committed)
