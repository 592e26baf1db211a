"""The worker's topics and tables, declared on the Faust app in one place: events in, dead
letters out, the user histories, the internal item-deltas topic with the item table it feeds,
the item catalog, the model-updates topic and the control topic (commands such as forgetting a
user). Why each is keyed and partitioned as it is: the comments in :func:`declare`."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import faust

from stream_app.kafka.admin import durability_configs
from stream_app.kafka.raw_schema import RawSchema
from stream_app.settings import Settings
from stream_app.worker.records import DeadLetter

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Topology:
    """The handles the agents read from and write to."""

    events: Any
    dlq: Any
    history: Any
    deltas: Any
    item_stats: Any
    model_updates: Any
    items: Any
    control: Any

    def produced(self) -> list[str]:
        """Topics the user side writes to (changelogs and deltas): their metadata must be
        loaded before the first batch (:func:`track_metadata`)."""
        return [
            self.history.changelog_topic.get_topic_name(),
            self.item_stats.changelog_topic.get_topic_name(),
            self.deltas.get_topic_name(),
        ]


def declare(app: faust.App, settings: Settings) -> Topology:
    """Declare the topics and tables on ``app``."""
    # RawSchema: key and value bytes as Kafka delivered them, with none of Faust's per-message
    # codec lookups (the validation that matters is ``parse_message``'s).
    events = app.topic(
        settings.topic_events, schema=RawSchema(), partitions=settings.event_partitions
    )
    dlq = app.topic(settings.topic_dlq, value_type=DeadLetter, key_serializer="raw")
    # The internal topics Faust creates when missing (``streamrec topics`` normally has) carry
    # the same min.insync.replicas as ours; the replication factor is the app's setting.
    durable = durability_configs(settings)
    # Keyed by the user id *bytes* (key_type=bytes -> raw serializer; a str key would be
    # JSON-quoted on the changelog). use_partitioner: the table is written after a whole
    # batch (no single "current event"), so the changelog partition comes from the producer's
    # murmur2 partitioner on the key -- the same partition the user's events are on, because the
    # producer keys events by the user id bytes and both topics have event_partitions partitions.
    history = app.Table(
        "history",
        default=list,
        key_type=bytes,
        partitions=settings.event_partitions,
        use_partitioner=True,
        extra_topic_configs=dict(durable),
    )
    # Internal topic keyed by item: the item table below is keyed like its source topic, so its
    # changelog partitions follow the item, and recovery after a restart restores the right rows.
    deltas = app.topic(
        settings.topic_item_deltas,
        schema=RawSchema(),
        partitions=settings.event_partitions,
        internal=True,
        config=dict(durable),
    )
    # item -> {"n": squared norm, "p": {other: co-occurrence}, "o": {source partition: offset}};
    # written once per item per batch; use_partitioner for the same reason as ``history``.
    item_stats = app.Table(
        "item_stats",
        default=dict,
        key_type=bytes,
        partitions=settings.event_partitions,
        use_partitioner=True,
        extra_topic_configs=dict(durable),
    )
    updates = app.topic(
        settings.topic_model_updates,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    # The compacted catalog, keyed by item id, one partition: one worker mirrors it in publish
    # order (a hide and the record after it can never be applied the other way round).
    items = app.topic(settings.topic_items, schema=RawSchema(), partitions=1)
    # Commands keyed by user id bytes, with the events' partition count: co-partitioned with the
    # events and the history changelog, so a user's command reaches the worker that holds her
    # history row (the row must be deleted where it lives: a memory table is not shared).
    control = app.topic(
        settings.topic_control, schema=RawSchema(), partitions=settings.event_partitions
    )
    return Topology(events, dlq, history, deltas, item_stats, updates, items, control)


async def track_metadata(app: faust.App, names: list[str]) -> None:
    """Make the producer track these topics' metadata before the first batch.

    The tables' ``use_partitioner`` asks aiokafka's partitioner, which reads cached metadata
    only; once the producer tracks some topics (the first send to one), its metadata refreshes
    cover only those, and a changelog topic never sent to before has none: the table write then
    fails with ``'NoneType' object is not iterable`` on every batch. Waiting on each topic's
    metadata once adds it to the tracked set.
    """
    try:
        client = app.producer._ensure_producer().client  # type: ignore[attr-defined]
        for name in names:
            await asyncio.wait_for(client._wait_on_metadata(name), timeout=30)
    except Exception as exc:  # no broker (the unit harness) or a slow one: batches will say
        log.warning("producer metadata for %s not loaded: %r", names, exc)
