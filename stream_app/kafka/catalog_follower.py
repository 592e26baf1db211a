"""Every worker's own copy of the catalog: a plain consumer of the compacted items topic with no
consumer group, read from the beginning and then followed (Kafka Streams calls this a global
table). The catalog side, a group member, mirrors records to Redis for readers; this copy is
what scoring reads in process, on every worker whatever partitions it owns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from models.catalog import InvalidItem, ItemRecord, parse_item_message
from stream_app.kafka.clients import aiokafka_options
from stream_app.settings import KafkaAccess

log = logging.getLogger(__name__)

#: Pause before a broken follower connects again (the worker keeps scoring meanwhile).
RETRY_S = 2.0

Apply = Callable[[str, ItemRecord | None], None]


def apply_messages(messages: list, apply: Apply) -> int:
    """Each valid record or tombstone applied in order; returns how many. Invalid ones are
    skipped here: the catalog side dead-letters them once."""
    applied = 0
    for message in messages:
        try:
            item_id, record = parse_item_message(message.key, message.value)
        except InvalidItem:
            continue
        apply(item_id, record)
        applied += 1
    return applied


async def _follow_once(kafka: KafkaAccess, topic: str, apply: Apply) -> None:
    # Subscribed without a group, aiokafka assigns every partition of the topic to this
    # consumer, and with no committed offset it starts at the earliest one.
    consumer = AIOKafkaConsumer(
        topic,
        **aiokafka_options(kafka),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="streamrec-catalog-follower",
    )
    await consumer.start()
    try:
        total = 0
        while True:
            batches = await consumer.getmany(timeout_ms=1_000, max_records=5_000)
            applied = sum(apply_messages(msgs, apply) for msgs in batches.values())
            if applied:
                total += applied
                log.info("catalog follower: %d records applied (%d in all)", applied, total)
    finally:
        await consumer.stop()


async def follow_catalog(kafka: KafkaAccess, topic: str, apply: Apply) -> None:
    """Applies every record of ``topic`` to ``apply``, from the first, until cancelled; a
    broker error restarts the follower from the beginning (re-applying is idempotent)."""
    while True:
        try:
            await _follow_once(kafka, topic, apply)
        except (KafkaError, OSError) as exc:
            log.warning("catalog follower: %s; again in %.0f s", exc, RETRY_S)
            await asyncio.sleep(RETRY_S)
