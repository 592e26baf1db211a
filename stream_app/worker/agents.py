"""The live-path agent: raw bytes from ``events`` -> DLQ or history table + ``LivePath``.

Thin on purpose: everything that decides something lives in ``stream_app.worker.live_path`` (pure, unit
tested) and ``stream_app.cache`` (the Redis adapter). The agent only

- reads ``events`` as raw bytes, so a malformed payload reaches our validator instead of
  crashing Faust's deserializer;
- micro-batches with ``take_events`` (``settings.batch_max_events`` within
  ``settings.batch_max_delay_s``), which also acknowledges the batch only after it is processed;
- sends rejected messages to the DLQ topic with their reason;
- writes each affected user's history to the ``history`` table once per batch (one changelog
  message per user per batch, not per event);
- runs the batch's Redis work and scoring (``LivePath.process``) on the event loop, or in a
  thread while a session model serves (Keras inference must not block the loop), after a
  batch whose Redis work failed, or when ``Settings.batch_in_thread`` asks: see "Where a batch
  runs" in docs/stream.md;
- sends the batch's item co-occurrence increments, one message per touched item, to the
  internal ``<app_id>-item-deltas`` topic keyed by item;

and a second agent, ``item-side``, consumes that topic: it owns the ``item_stats`` table (one
row per item of its partitions) and publishes each touched item's top-M neighbours to Redis. The
session model lives in a ``ModelSlot``: loaded at start, re-offered on every ``model-updates``
message and every ``settings.model_poll_s`` (all in an executor), swapped between batches.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import faust
import orjson

from models.events import Interaction, InvalidEvent, event_weight
from models.online.stream.deltas import (
    MAX_ROW_PAIRS,
    MAX_SUCCESSORS,
    NEIGHBORS_M,
    PAIR_WINDOW,
    ItemDelta,
    apply_deltas,
    deltas_by_item,
    merge_history,
    published_lists,
    transitions,
    user_side_batch,
)
from models.online.stream.partitions import key_partition
from stream_app.cache import CacheKeys, RecCache, open_cache
from stream_app.cache.base import CacheUnavailable
from stream_app.cache.keys import counted_marks
from stream_app.cache.telemetry import TelemetryKeys
from stream_app.kafka.model_updates import InvalidUpdate, parse_update
from stream_app.kafka.raw_schema import RawSchema
from stream_app.settings import Settings
from stream_app.worker.live_path import LivePath, Scorer, items_by_user, parse_message
from stream_app.worker.model_slot import ModelSlot
from stream_app.worker.online_scorer import OnlineScorer
from stream_app.worker.records import DeadLetter, dead_letter
from stream_app.worker.telemetry import BatchTelemetry, TelemetryRecorder

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SortedBatch:
    """A micro-batch split into accepted events and dead letters (with their message keys)."""

    valid: list[Interaction]
    dead: list[tuple[bytes | None, DeadLetter]]
    #: Kafka timestamps (ms) of the valid events, for freshness
    kafka_ts_ms: list[int]
    #: (partition, offset) of each valid event
    positions: list[tuple[int, int]]

    def fresh(self, marks: dict[int, int]) -> SortedBatch:
        """Only the valid events past the high-water marks (those not counted before).

        >>> from models.events import Interaction
        >>> b = SortedBatch([Interaction("u", "a", "view", 1), Interaction("u", "b", "view", 2)],
        ...                 [], [1, 2], [(0, 7), (0, 8)])
        >>> [e.item_id for e in b.fresh({0: 7}).valid]
        ['b']
        """
        # offset -1: unknown position (a local channel in tests): always counted
        keep = [i for i, (p, o) in enumerate(self.positions) if o < 0 or o > marks.get(p, -1)]
        return SortedBatch(
            [self.valid[i] for i in keep],
            self.dead,
            [self.kafka_ts_ms[i] for i in keep],
            [self.positions[i] for i in keep],
        )

    def last_offsets(self) -> dict[int, int]:
        """partition -> highest offset of the valid events."""
        out: dict[int, int] = {}
        for p, o in self.positions:
            if o >= 0:
                out[p] = max(o, out.get(p, -1))
        return out


def letter_for(event: Any, reason: str) -> tuple[bytes | None, DeadLetter]:
    """(message key, DLQ record) for a rejected Faust event: its bytes, where it came from."""
    message = event.message
    raw = event.value if isinstance(event.value, bytes | bytearray) else None
    return (
        message.key if isinstance(message.key, bytes) else None,
        dead_letter(
            raw,
            reason,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            message_timestamp_ms=int(message.timestamp * 1000) if message.timestamp else None,
        ),
    )


def sort_batch(events: Sequence[Any]) -> SortedBatch:
    """Validate each Faust event of a batch; never raises on bad input."""
    valid: list[Interaction] = []
    dead: list[tuple[bytes | None, DeadLetter]] = []
    stamps: list[int] = []
    positions: list[tuple[int, int]] = []
    for event in events:
        message = event.message
        try:
            parsed = parse_message(event.value)
        except InvalidEvent as exc:
            dead.append(letter_for(event, str(exc)))
            continue
        valid.append(parsed)
        stamps.append(int(message.timestamp * 1000) if message.timestamp else parsed.timestamp_ms)
        offset = message.offset if isinstance(message.offset, int) else -1
        positions.append((int(message.partition or 0), offset))
    return SortedBatch(valid, dead, stamps, positions)


@dataclass(frozen=True, slots=True)
class LivePathParts:
    """What ``register_live_path`` declared on the app (handles for tests and other agents)."""

    agent: Any
    events_topic: Any
    dlq_topic: Any
    history: Any
    deltas_topic: Any
    item_agent: Any
    item_stats: Any
    slot: ModelSlot


def item_partition(item: str, partitions: int) -> int:
    """The partition of the item table's changelog row for ``item``: the one Kafka's default
    partitioner gives the key (:func:`key_partition`)."""
    return key_partition(item, partitions)


def pack_deltas(deltas: dict[tuple[str, int], ItemDelta], partitions: int) -> dict[int, bytes]:
    """One message value per target partition: ``[row, ...]`` as JSON, a row per delta
    (:meth:`ItemDelta.to_row`: a flat list, so neither side builds a dict per delta).

    >>> packed = pack_deltas({("a", 0): ItemDelta(1.0, {"b": 1.0}, (0, 3))}, 4)
    >>> [(i, d.pairs, d.src) for i, d in unpack_deltas(next(iter(packed.values())))]
    [('a', {'b': 1.0}, (0, 3))]
    """
    groups: dict[int, list[list[object]]] = {}
    for (item, _), delta in deltas.items():
        part = item_partition(item, partitions)
        rows = groups.get(part)
        if rows is None:
            rows = groups[part] = []
        rows.append(delta.to_row(item))
    return {p: orjson.dumps(rows) for p, rows in groups.items()}


def unpack_deltas(raw: bytes | str) -> list[tuple[str, ItemDelta]]:
    """Inverse of :func:`pack_deltas` (a batch keeps its per-item order).

    >>> unpack_deltas(b'[["a", 1.0, {"b": 1.0}, 0, 3, {}]]')
    [('a', ItemDelta(norm=1.0, pairs={'b': 1.0}, src=(0, 3), succ={}))]
    """
    return [ItemDelta.from_row(row) for row in orjson.loads(raw)]


def batch_deltas(
    batch: SortedBatch, before: dict[str, list[str]]
) -> dict[tuple[str, int], ItemDelta]:
    """(item, source partition) -> aggregated delta of a batch; ``before`` = histories before it.

    One group per source partition, so each delta carries ``src`` = (partition, last offset)
    and the item side can skip it if it is ever resent.

    >>> from models.events import Interaction
    >>> b = SortedBatch([Interaction("u", "b", "view", 2)], [], [2], [(1, 9)])
    >>> d = batch_deltas(b, {"u": ["a"]})
    >>> d[("a", 1)].pairs, d[("b", 1)].src
    ({'b': 1.0}, (1, 9))
    """
    groups: dict[int, list[Interaction]] = {}
    last: dict[int, int] = {}
    for event, (p, o) in zip(batch.valid, batch.positions, strict=True):
        groups.setdefault(p, []).append(event)
        last[p] = max(o, last.get(p, -1))
    out: dict[tuple[str, int], ItemDelta] = {}
    for p, events in groups.items():
        per_user: dict[str, list[tuple[str, float]]] = {}
        for e in sorted(events, key=lambda e: e.timestamp_ms):
            per_user.setdefault(e.user_id, []).append((e.item_id, event_weight(e)))
        learned = []
        moves = []
        for user, items in per_user.items():
            history = before.get(user, [])
            learned.extend(user_side_batch(history, items, window=PAIR_WINDOW))
            moves.extend(transitions(history, [item for item, _ in items]))
        for item, delta in deltas_by_item(learned, moves).items():
            delta.src = (p, last[p])
            out[(item, p)] = delta
    return out


def _telemetry_recorder(
    store: RecCache, keys: CacheKeys, settings: Settings
) -> Callable[[BatchTelemetry], None] | None:
    """Online HitRate@10 and freshness go to Redis next to the recs (``stream_app.worker.telemetry``);
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

    ``scorer`` defaults to ``OnlineScorer`` (neighbours + trending + the session model);
    ``cache`` to the backend named by
    ``settings.redis_url``, opened when the agent starts (a given one is used as is and left
    open, for tests).
    """
    # RawSchema: key and value bytes as Kafka delivered them, with none of Faust's per-message
    # codec lookups (the validation that matters is ``parse_message``'s).
    events_topic = app.topic(
        settings.topic_events, schema=RawSchema(), partitions=settings.event_partitions
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
    # Internal topic keyed by item: the item table below is keyed like its source topic, so its
    # changelog partitions follow the item, and recovery after a restart restores the right rows.
    deltas_topic = app.topic(
        settings.topic_item_deltas,
        schema=RawSchema(),
        partitions=settings.event_partitions,
        internal=True,
    )
    # item -> {"n": squared norm, "p": {other: co-occurrence}, "o": {source partition: offset}};
    # written once per item per batch; use_partitioner for the same reason as ``history``.
    item_stats = app.Table(
        "item_stats",
        default=dict,
        key_type=bytes,
        partitions=settings.event_partitions,
        use_partitioner=True,
    )
    slot = ModelSlot()

    async def load_session_model(reason: str) -> None:
        try:
            decision = await slot.offer_newest_async(settings.model_store)
        except Exception:
            log.exception("session model check (%s) failed; serving %s", reason, slot.version)
            return
        if decision is not None:
            log.info("session model (%s): %s %s", reason, decision.version, decision.reason)

    async def live_path(stream: faust.StreamT) -> AsyncIterator[None]:
        """events -> dead letters | history table + item deltas + top-N in Redis"""
        keys = CacheKeys(settings.redis_key_prefix)
        store = cache or open_cache(settings.redis_url, keys)
        await load_session_model("start")
        await _track_topics(
            app,
            [
                history.changelog_topic.get_topic_name(),
                item_stats.changelog_topic.get_topic_name(),
                deltas_topic.get_topic_name(),
            ],
        )
        path = LivePath(
            store,
            scorer
            or OnlineScorer(
                store,
                slot,
                partitions=settings.event_partitions,
                keys=keys,
                history_len=settings.history_len,
            ),
            top_n=settings.top_n,
            half_life_s=settings.popularity_half_life_s,
            rec_ttl_s=settings.rec_ttl_s,
            history_len=settings.history_len,
            telemetry=_telemetry_recorder(store, keys, settings),
            hitrate_sample=settings.hitrate_sample,
        )
        try:
            # take_events (events, not values): the DLQ needs each message's topic/partition/offset.
            async for events in stream.take_events(  # type: ignore[attr-defined]
                settings.batch_max_events, within=settings.batch_max_delay_s
            ):
                try:
                    sorted_batch = sort_batch(events)
                    for key, letter in sorted_batch.dead:
                        await dlq_topic.send(key=key, value=letter)
                    # Idempotence: events at or below the marks of the batch's *last* step (recs +
                    # counters) were fully processed before a restart: skip them. Events between
                    # those and the trending marks are processed again; trending skips them.
                    # On the loop unless told, a session model serves, or Redis is failing
                    # (``pending_cache_errors``: its retries would hold the loop for seconds).
                    on_loop = (
                        not settings.batch_in_thread
                        and slot.current() is None
                        and not path.pending_cache_errors
                    )
                    marks_key = counted_marks(settings.topic_events)
                    marks = (
                        _read_marks(store, marks_key)
                        if on_loop
                        else await asyncio.to_thread(_read_marks, store, marks_key)
                    )
                    batch = sorted_batch.fresh(marks)
                    histories: dict[str, list[str]] = {}
                    before: dict[str, list[str]] = {}
                    # History merges *every* valid event, replayed ones included: the merge is
                    # idempotent, and after a SIGKILL the table's changelog may lack events the
                    # Redis marks already count (its writes are buffered).
                    for user, items in items_by_user(sorted_batch.valid).items():
                        key = user.encode()
                        before[user] = list(history.get(key) or [])
                        updated = merge_history(before[user], items, settings.history_len)
                        history[key] = updated
                        histories[user] = updated
                    # One message per target partition (not per item): Faust's per-message
                    # cost dominated. The partition is the one the producer's partitioner
                    # gives each item key, so the item table stays co-partitioned.
                    pending = [
                        await deltas_topic.send(key=b"deltas", value=value, partition=part)
                        for part, value in pack_deltas(
                            batch_deltas(batch, before), settings.event_partitions
                        ).items()
                    ]
                    # Acknowledged before the counted marks move (with the recs): a crash can
                    # then resend a batch's deltas (the item side skips a delta it applied, by
                    # its source offset) but never lose them. Events past the counted marks
                    # are reprocessed whole, so trending and scoring need not wait for the
                    # acks: the thread waits for them only before it writes the recs.
                    work = functools.partial(
                        path.process,
                        batch.valid,
                        histories,
                        len(sorted_batch.dead),
                        kafka_ts_ms=batch.kafka_ts_ms,
                        hwm=(settings.topic_events, batch.positions),
                        before=before,
                    )
                    if on_loop:
                        # See "Where a batch runs" in docs/stream.md: no thread to hand the
                        # GIL to and back; the deltas' acks first, as the loop cannot wait
                        # for them from inside the batch.
                        await _all_acked(pending)
                        work()
                    else:
                        acked = _acks(pending, asyncio.get_running_loop())
                        await asyncio.to_thread(work, durable=acked)
                except Exception:
                    # A bug must not stop the consumer for good (a crashed Faust agent stays
                    # down while the worker looks alive): log loudly and move on.
                    log.exception("live path failed on a batch of %d events", len(events))
                yield None
        finally:
            if cache is None:
                store.close()

    async def item_side(stream: faust.StreamT) -> AsyncIterator[None]:
        """item deltas -> item_stats table + top-M neighbours in Redis"""
        keys = CacheKeys(settings.redis_key_prefix)
        store = cache or open_cache(settings.redis_url, keys)
        try:
            # A longer window than the user side's: each batch touches (rewrites, changelogs
            # and republishes) every item its deltas name, so fewer, larger batches cost far
            # less per event; the lists lag by at most the window.
            async for events in stream.take_events(  # type: ignore[attr-defined]
                settings.item_batch_max_deltas, within=settings.item_batch_delay_s
            ):
                rows: dict[bytes, dict] = {}
                try:
                    # The decoding and row arithmetic run in a thread: done on the event loop, a
                    # 0.5 s batch stalled the user side for tens of ms. Only the table reads
                    # (dict lookups) and writes (changelog sends) stay on the loop.
                    deltas, rejected = await asyncio.to_thread(_unpacked, [e.value for e in events])
                    for index, reason in rejected:
                        # Only our user side writes here: a bad message is a bug or version
                        # skew. It goes to the DLQ; the batch's good deltas are still applied.
                        log.warning("item delta message to the DLQ: %s", reason)
                        key, letter = letter_for(events[index], reason)
                        await dlq_topic.send(key=key, value=letter)
                    current = {key: item_stats.get(key) for key in {key for key, _ in deltas}}
                    rows = await asyncio.to_thread(_folded, deltas, current)
                    await write_paced(item_stats, rows, app.producer.buffer)
                    await asyncio.to_thread(_publish_neighbors, store, rows)
                except CacheUnavailable as exc:
                    # The rows are in the table; their lists are republished when next touched.
                    log.warning(
                        "neighbours of %d items not published, cache unavailable: %s",
                        len(rows),
                        exc,
                    )
                except Exception:
                    log.exception("item side failed on a batch of %d deltas", len(events))
                yield None
        finally:
            if cache is None:
                store.close()

    async def model_updates(stream: faust.StreamT) -> AsyncIterator[None]:
        """model-updates -> offer the announced version to the slot (in an executor)"""
        async for value in stream:
            try:
                update = parse_update(value if isinstance(value, bytes) else bytes(value))
            except (InvalidUpdate, TypeError) as exc:
                log.warning("ignoring a malformed model update: %s", exc)
                yield None
                continue
            try:
                decision = await slot.offer_async(update.path)
                log.info("session model update %s: %s", decision.version, decision.reason)
            except Exception:
                log.exception("session model update %s failed", update.version)
            yield None

    updates_topic = app.topic(
        settings.topic_model_updates,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    agent = app.agent(events_topic, name="live-path")(live_path)
    item_agent = app.agent(deltas_topic, name="item-side")(item_side)
    app.agent(updates_topic, name="model-updates")(model_updates)
    if settings.model_poll_s > 0:
        app.timer(settings.model_poll_s)(_poll(load_session_model))
    return LivePathParts(
        agent, events_topic, dlq_topic, history, deltas_topic, item_agent, item_stats, slot
    )


async def _track_topics(app: faust.App, names: list[str]) -> None:
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


#: How long a batch waits for the broker to acknowledge its item deltas before it gives up
#: (the batch is then logged as failed and its recs are not written).
DELTA_ACK_TIMEOUT_S = 60.0


async def _all_acked(pending: Sequence[Any]) -> None:
    """Wait on the event loop for the sends' acknowledgements (``pending``: what
    ``Topic.send`` returned), at most ``DELTA_ACK_TIMEOUT_S``."""
    futures = [f for f in pending if isinstance(f, asyncio.Future)]
    if futures:
        await asyncio.wait_for(asyncio.gather(*futures), DELTA_ACK_TIMEOUT_S)


def _acks(pending: Sequence[Any], loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """A blocking wait, for a worker thread, on the sends' acknowledgements (``pending``:
    what ``Topic.send`` returned; futures of the event loop ``loop``): :func:`_all_acked`, run
    on that loop."""

    def wait() -> None:
        if any(isinstance(f, asyncio.Future) for f in pending):
            asyncio.run_coroutine_threadsafe(_all_acked(pending), loop).result()

    return wait


#: Table writes allowed to wait in Faust's producer buffer before the item side lets them drain.
#: Faust's conductor stops delivering to *every* stream while more than
#: ``ProducerBuffer.max_messages`` (100) writes wait, so an item batch that set its ~1,000 rows
#: at once starved the user side for 0.5-0.8 s each time (a per-batch trace of a paced MovieLens
#: run: user batches of 1-50 events, ages growing to 1 s, after every item batch).
ITEM_WRITES_IN_FLIGHT = 50
#: How often a paced writer looks at the producer buffer while it drains.
EBB_POLL_S = 0.002


async def write_paced(
    table: Any,
    rows: Mapping[bytes, Any],
    buffer: Any,
    in_flight: int = ITEM_WRITES_IN_FLIGHT,
    poll_s: float = EBB_POLL_S,
) -> None:
    """``table[key] = row`` for every row, never more than ``in_flight`` changelog writes
    waiting in Faust's producer ``buffer`` (``ProducerBuffer.size``), so the conductor keeps
    delivering to the user side while the rows go out. Writes happen in ``rows``' order."""
    for key, row in rows.items():
        while buffer.size >= in_flight:
            await asyncio.sleep(poll_s)
        table[key] = row


def _poll(load: Callable[[str], Any]) -> Callable[[], Any]:
    async def poll_model_store() -> None:
        await load("poll")

    return poll_model_store


def _read_marks(store: RecCache, topic: str) -> dict[int, int]:
    """High-water marks, or none when the cache is down (then nothing is skipped)."""
    try:
        return store.read_hwm(topic)
    except Exception as exc:
        log.warning("high-water marks unavailable: %r", exc)
        return {}


def _unpacked(
    values: Sequence[object],
) -> tuple[list[tuple[bytes, ItemDelta]], list[tuple[int, str]]]:
    """Every (item key, delta) of a batch of packed delta messages, in order, and (position,
    reason) of each message that is not one (its deltas are left out, the others kept).

    >>> good = pack_deltas({("a", 0): ItemDelta(1.0, {"b": 1.0}, (0, 3))}, 1)[0]
    >>> deltas, rejected = _unpacked(
    ...     [b"{not json", good, b'[["a", "1", {}, 0, 3, {}]]', b'[["a", 5]]'])
    >>> [(key, d.pairs) for key, d in deltas], [i for i, _ in rejected]
    ([(b'a', {'b': 1.0})], [0, 2, 3])
    """
    deltas: list[tuple[bytes, ItemDelta]] = []
    rejected: list[tuple[int, str]] = []
    for position, value in enumerate(values):
        try:
            if not isinstance(value, bytes | bytearray):
                raise TypeError(f"value is {type(value).__name__}, not bytes")
            unpacked = unpack_deltas(value)
            for _, delta in unpacked:
                check_delta(delta)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            # AttributeError: an old-form row (``[item, {...}]``) whose body is no object
            rejected.append((position, f"undecodable item deltas: {type(exc).__name__}: {exc}"))
            continue
        deltas.extend((item.encode(), delta) for item, delta in unpacked)
    return deltas, rejected


def check_delta(delta: ItemDelta) -> None:
    """Raise TypeError unless the delta's fields have the types the item side adds up (their
    contents are trusted: only our user side writes the topic, and checking every pair would
    cost what :meth:`ItemDelta.from_row` saves by not converting them)."""
    src = delta.src
    if not (
        isinstance(delta.norm, int | float)
        and isinstance(delta.pairs, dict)
        and isinstance(delta.succ, dict)
        and (src is None or (isinstance(src[0], int) and isinstance(src[1], int)))
    ):
        raise TypeError(f"malformed delta fields: {delta!r}"[:300])


def _folded(
    deltas: Sequence[tuple[bytes, ItemDelta]], current: dict[bytes, dict | None]
) -> dict[bytes, dict]:
    """Each changed item's row after the batch's deltas (``current``: the rows before it); an
    item whose deltas were all applied before (resent after a restart) is left out.

    >>> rows = _folded([(b"a", ItemDelta(1.0, {"b": 1.0})), (b"a", ItemDelta(1.0, {}))],
    ...                {b"a": None})
    >>> rows[b"a"]["n"], rows[b"a"]["p"]
    (2.0, {'b': 1.0})
    """
    grouped: dict[bytes, list[ItemDelta]] = {}
    for key, delta in deltas:
        grouped.setdefault(key, []).append(delta)
    rows: dict[bytes, dict] = {}
    for key, group in grouped.items():
        row = apply_deltas(current.get(key), group, MAX_ROW_PAIRS, MAX_SUCCESSORS)
        if row is not None:
            rows[key] = row
    return rows


def _publish_neighbors(store: RecCache, rows: dict[bytes, dict]) -> None:
    """Each touched item's top-M neighbours, successors and norm: one read, one pipeline."""
    by_item = {k.decode(): r for k, r in rows.items()}
    local = {item: float(r.get("n", 0.0)) for item, r in by_item.items()}
    others = sorted({o for r in rows.values() for o in r.get("p", {})} - set(local))
    norms = {**store.get_norms(others), **local}
    lists, nexts = published_lists(by_item, norms, NEIGHBORS_M, MAX_SUCCESSORS)
    store.publish_neighbors(lists, local, successors=nexts)
