"""Read the events topic up to "now" (the end offsets taken at start), from offset 0 or its tail.

A thin kafka-python adapter for batch jobs (the session-model trainer): no consumer group, no
commits, partitions assigned explicitly. "Now" is fixed when reading starts, so a busy producer
cannot keep the reader going forever. Invalid messages are skipped and counted (the stream
worker sends them to the dead-letter topic; a batch reader only needs to know how many).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from models.datasets.base import chronological_key
from models.events import Interaction, InvalidEvent, decode_event
from stream_app.kafka.clients import kafka_python_options
from stream_app.settings import KafkaAccess


class EventLogUnavailable(RuntimeError):
    """The broker or the topic could not be reached within the time allowed."""


@dataclass(slots=True)
class TopicSnapshot:
    """Events read from a topic (in stream order) and how many messages were skipped."""

    events: list[Interaction]
    invalid: int
    end_offsets: dict[int, int]


def decode_values(values: Iterable[bytes | None]) -> tuple[list[Interaction], int]:
    """Decode message values; return (valid events in stream order, number of invalid ones).

    >>> good = b'{"user_id":"u","item_id":"i","event_type":"view","timestamp":1700000000000}'
    >>> events, invalid = decode_values([good, b"not json", None])
    >>> len(events), invalid
    (1, 2)
    """
    events: list[Interaction] = []
    invalid = 0
    for value in values:
        if value is None:
            invalid += 1
            continue
        try:
            events.append(decode_event(value))
        except InvalidEvent:
            invalid += 1
    events.sort(key=chronological_key)
    return events, invalid


def read_topic(
    kafka: KafkaAccess,
    topic: str,
    timeout_s: float = 30.0,
    idle_timeout_s: float = 30.0,
    tail: int = 0,
) -> TopicSnapshot:
    """All messages of ``topic`` from offset 0 (``tail`` > 0: from ``tail`` before each
    partition's end, enough for the newest ``tail`` events of the topic) to the end offsets
    seen at start.

    ``timeout_s`` bounds connecting and fetching metadata; ``idle_timeout_s`` bounds how long
    polling may return nothing while offsets are still missing.
    """
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    try:
        consumer = KafkaConsumer(
            **kafka_python_options(kafka),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="streamrec-trainer",
        )
    except KafkaError as exc:
        raise EventLogUnavailable(f"cannot reach Kafka at {kafka.bootstrap}: {exc}") from None
    try:
        try:
            consumer.bootstrap(timeout_ms=int(timeout_s * 1000))
            partitions = consumer.partitions_for_topic(topic)
        except KafkaError as exc:
            raise EventLogUnavailable(f"cannot reach Kafka at {kafka.bootstrap}: {exc}") from None
        if not partitions:
            raise EventLogUnavailable(f"topic {topic!r} does not exist on {kafka.bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps, timeout_ms=int(timeout_s * 1000))
        if tail > 0:
            start = consumer.beginning_offsets(tps, timeout_ms=int(timeout_s * 1000))
            for tp in tps:
                consumer.seek(tp, max(start[tp], end[tp] - tail))
        values: list[bytes | None] = []
        pending = {tp for tp in tps if consumer.position(tp) < end[tp]}
        last_progress = time.monotonic()
        while pending:
            batch = consumer.poll(timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    if record.offset < end[tp]:
                        values.append(record.value)
                last_progress = time.monotonic()
            pending = {tp for tp in pending if consumer.position(tp) < end[tp]}
            if pending and time.monotonic() - last_progress > idle_timeout_s:
                raise EventLogUnavailable(
                    f"no progress reading {topic!r} for {idle_timeout_s:.0f}s "
                    f"({len(values)} messages read)"
                )
        events, invalid = decode_values(values)
        return TopicSnapshot(events, invalid, {tp.partition: end[tp] for tp in tps})
    finally:
        consumer.close()
