"""The live-path agent: raw bytes from ``events`` -> DLQ or history table + ``LivePath``.

Thin on purpose: everything that decides something lives in ``stream_app.live_path`` (pure, unit
tested) and ``stream_app.cache`` (the Redis adapter). The agent only

- reads ``events`` as raw bytes, so a malformed payload reaches our validator instead of
  crashing Faust's deserializer;
- micro-batches with ``take_events`` (``settings.batch_max_events`` within
  ``settings.batch_max_delay_s``), which also acknowledges the batch only after it is processed;
- sends rejected messages to the DLQ topic with their reason;
- writes each affected user's history to the ``history`` table once per batch (one changelog
  message per user per batch, not per event);
- runs the batch's Redis work in a thread, so Redis latency never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import faust

from models.events import Interaction, InvalidEvent
from stream_app.cache import CacheKeys, RecCache, open_cache
from stream_app.live_path import (
    LivePath,
    Scorer,
    TrendingScorer,
    items_by_user,
    merge_history,
    parse_message,
)
from stream_app.records import DeadLetter, dead_letter
from stream_app.settings import Settings
from stream_app.telemetry import BatchTelemetry, TelemetryKeys, TelemetryRecorder

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SortedBatch:
    """A micro-batch split into accepted events and dead letters (with their message keys)."""

    valid: list[Interaction]
    dead: list[tuple[bytes | None, DeadLetter]]
    #: Kafka timestamps (ms) of the valid events, for freshness
    kafka_ts_ms: list[int]


def sort_batch(events: Sequence[Any]) -> SortedBatch:
    """Validate each Faust event of a batch; never raises on bad input."""
    valid: list[Interaction] = []
    dead: list[tuple[bytes | None, DeadLetter]] = []
    stamps: list[int] = []
    for event in events:
        message = event.message
        try:
            parsed = parse_message(event.value)
        except InvalidEvent as exc:
            raw = event.value if isinstance(event.value, bytes | bytearray) else None
            dead.append(
                (
                    message.key if isinstance(message.key, bytes) else None,
                    dead_letter(
                        raw,
                        str(exc),
                        topic=message.topic,
                        partition=message.partition,
                        offset=message.offset,
                        message_timestamp_ms=int(message.timestamp * 1000)
                        if message.timestamp
                        else None,
                    ),
                )
            )
            continue
        valid.append(parsed)
        stamps.append(int(message.timestamp * 1000) if message.timestamp else parsed.timestamp_ms)
    return SortedBatch(valid, dead, stamps)


@dataclass(frozen=True, slots=True)
class LivePathParts:
    """What ``register_live_path`` declared on the app (handles for tests and other agents)."""

    agent: Any
    events_topic: Any
    dlq_topic: Any
    history: Any


def _telemetry_recorder(
    store: RecCache, keys: CacheKeys, settings: Settings
) -> Callable[[BatchTelemetry], None] | None:
    """Online HitRate@10 and freshness go to Redis next to the recs (``stream_app.telemetry``);
    other backends (the in-memory one of tests) record none."""
    from stream_app.cache.redis_backend import RedisCache

    if not isinstance(store, RedisCache):
        return None
    worker_id = f"{settings.app_id}@{socket.gethostname()}:{os.getpid()}"
    return TelemetryRecorder(store.client, worker_id, TelemetryKeys(keys)).record


def register_live_path(
    app: faust.App,
    settings: Settings,
    scorer: Scorer | None = None,
    cache: RecCache | None = None,
) -> LivePathParts:
    """Declare the topics, the history table and the agent on ``app``.

    ``scorer`` defaults to ``TrendingScorer``; ``cache`` to the backend named by
    ``settings.redis_url``, opened when the agent starts (a given one is used as is and left
    open, for tests).
    """
    events_topic = app.topic(
        settings.topic_events,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.event_partitions,
    )
    dlq_topic = app.topic(settings.topic_dlq, value_type=DeadLetter, key_serializer="raw")
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
    )
    chosen_scorer = scorer or TrendingScorer()

    async def live_path(stream: faust.StreamT) -> AsyncIterator[None]:
        """events -> dead letters | history table + top-N in Redis"""
        keys = CacheKeys(settings.redis_key_prefix)
        store = cache or open_cache(settings.redis_url, keys)
        path = LivePath(
            store,
            chosen_scorer,
            top_n=settings.top_n,
            half_life_s=settings.popularity_half_life_s,
            rec_ttl_s=settings.rec_ttl_s,
            history_len=settings.history_len,
            telemetry=_telemetry_recorder(store, keys, settings),
        )
        try:
            # take_events (events, not values): the DLQ needs each message's topic/partition/offset.
            async for events in stream.take_events(  # type: ignore[attr-defined]
                settings.batch_max_events, within=settings.batch_max_delay_s
            ):
                try:
                    batch = sort_batch(events)
                    for key, letter in batch.dead:
                        await dlq_topic.send(key=key, value=letter)
                    histories: dict[str, list[str]] = {}
                    for user, items in items_by_user(batch.valid).items():
                        key = user.encode()
                        updated = merge_history(history.get(key) or [], items, settings.history_len)
                        history[key] = updated
                        histories[user] = updated
                    await asyncio.to_thread(
                        path.process,
                        batch.valid,
                        histories,
                        len(batch.dead),
                        kafka_ts_ms=batch.kafka_ts_ms,
                    )
                except Exception:
                    # A bug must not stop the consumer for good (a crashed Faust agent stays
                    # down while the worker looks alive): log loudly and move on.
                    log.exception("live path failed on a batch of %d events", len(events))
                yield None
        finally:
            if cache is None:
                store.close()

    agent = app.agent(events_topic, name="live-path")(live_path)
    return LivePathParts(agent, events_topic, dlq_topic, history)
