"""The worker's agents, wired on the Faust app: the user side (events -> dead letters, the
history table, item deltas and each affected user's top-N in Redis), the item side (item deltas
-> the ``item_stats`` table and the neighbour lists in Redis), the catalog side (item records ->
their metadata in Redis), the control side (commands: forget a user) and the model-updates
listener.

Each agent only loops and guards: the steps of a batch are :class:`UserSide`, :class:`ItemSide`,
:class:`CatalogSide` and :class:`ControlSide`, the topics and tables
:mod:`stream_app.worker.topology`. The session model lives in a ``ModelSlot``: loaded at start,
re-offered on every ``model-updates`` message and every ``settings.model_poll_s`` (in an
executor), swapped between batches; a swap starts the refresh of recent users' lists.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import faust

from models.online.stream.content import ItemContent
from stream_app.cache import CacheKeys, CacheUnavailable, RecCache, open_cache
from stream_app.cache.journals import MODEL_DECISIONS_KEPT, encode_entry
from stream_app.cache.telemetry import WORKER_HEARTBEAT_S, TelemetryKeys
from stream_app.kafka.catalog_follower import follow_catalog
from stream_app.kafka.control import EventOffsets
from stream_app.kafka.model_updates import InvalidUpdate, parse_update
from stream_app.settings import Settings
from stream_app.worker.catalog_side import CatalogSide
from stream_app.worker.control_side import ControlSide, Offsets
from stream_app.worker.item_side import ItemSide
from stream_app.worker.live_path import LivePath, Scorer
from stream_app.worker.model_slot import Decision, ModelSlot
from stream_app.worker.online_scorer import OnlineScorer
from stream_app.worker.rebuild import CacheGuard
from stream_app.worker.refresh import Pace, Refresher
from stream_app.worker.telemetry import TelemetryRecorder
from stream_app.worker.topology import Topology, declare, track_metadata
from stream_app.worker.user_side import UserSide

log = logging.getLogger(__name__)


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
    catalog_agent: Any
    items_topic: Any
    control_agent: Any
    control_topic: Any


def register_live_path(
    app: faust.App,
    settings: Settings,
    scorer: Scorer | None = None,
    cache: RecCache | None = None,
    offsets: Offsets | None = None,
) -> LivePathParts:
    """Declare the topics, the tables and the agents on ``app``.

    ``scorer`` defaults to ``OnlineScorer`` (the stream model with its rankers and the session
    model); ``cache`` to the backend named by ``settings.redis``, opened when an agent
    starts (a given one is used as is and left open, for tests); ``offsets`` (the events
    topic's end and committed offsets, which the control side waits on) to Kafka's.
    """
    topology = declare(app, settings)
    keys = CacheKeys.for_settings(settings)
    refreshers: list[Refresher] = []  # the live path's, while it runs
    journal = _decision_journal(cache, keys, settings)
    slot = ModelSlot(on_decision=_on_decision(journal, refreshers), store=settings.model_store)
    recorders: list[TelemetryRecorder] = []  # the live path's, once it has started
    app.timer(WORKER_HEARTBEAT_S)(_heartbeat(recorders))
    content = _catalog_copy(app, settings)
    event_now = EventClock()
    guard, check_cache = _cache_guard(
        app, settings, topology, cache or open_cache(settings.redis, keys)
    )

    async def load_session_model(reason: str) -> None:
        try:
            decision = await slot.offer_newest_async(settings.model_store, trigger=reason)
        except Exception:
            log.exception("session model check (%s) failed; serving %s", reason, slot.version)
            return
        if decision is not None:
            log.info("session model (%s): %s %s", reason, decision.version, decision.reason)

    async def live_path(stream: faust.StreamT) -> AsyncIterator[None]:
        """events -> dead letters | history table + item deltas + top-N in Redis"""
        with _opened(cache, settings, keys) as store:
            await load_session_model("start")
            await track_metadata(app, topology.produced())
            recorder = _telemetry_recorder(store, keys, settings)
            recorders.extend([recorder] if recorder is not None else [])
            path = _live_path(store, scorer, slot, keys, settings, recorder, content)
            event_now.path = path
            side = UserSide(topology, settings, store, path, slot, keys)
            guard.register("users", lambda parts: side.rebuild(parts, event_now()))
            limit, within = settings.batch_max_events, settings.batch_max_delay_s
            process = _checked_first(side.process, check_cache)
            with _refreshing(app, settings, side, refreshers):
                async for _ in _guarded_batches(stream, limit, within, process, "live path"):
                    yield None

    async def catalog_side(stream: faust.StreamT) -> AsyncIterator[None]:
        """item records -> dead letters | item metadata and the hidden set in Redis"""
        with _opened(cache, settings, keys) as store:
            side = CatalogSide(topology, store, keys)
            limit, within = settings.batch_max_events, settings.batch_max_delay_s
            async for _ in _guarded_batches(stream, limit, within, side.process, "catalog"):
                yield None

    item_side = _item_side(app, settings, topology, cache, keys, guard, event_now)
    sides = {"live-path": live_path, "item-side": item_side, "catalog": catalog_side}
    sides["control"] = _control_side(app, settings, topology, cache, keys, offsets)
    return _agents(app, settings, topology, slot, sides, load_session_model)


class EventClock:
    """The latest batch's event time (ms) of the live path, else the wall clock: what a
    rebuild decays trending to (decay runs in event time)."""

    def __init__(self) -> None:
        self.path: LivePath | None = None

    def __call__(self) -> int:
        latest = self.path.now_ms if self.path is not None else None
        return latest if latest is not None else int(time.time() * 1000)


def _item_side(
    app: faust.App,
    settings: Settings,
    topology: Topology,
    cache: RecCache | None,
    keys: CacheKeys,
    guard: CacheGuard,
    event_now: Callable[[], int],
) -> Callable[[faust.StreamT], AsyncIterator[None]]:
    """The item-side agent (``ItemSide``), its rebuild steps registered on ``guard``."""

    async def item_side(stream: faust.StreamT) -> AsyncIterator[None]:
        """item deltas -> item_stats table + top-M neighbours in Redis"""
        with _opened(cache, settings, keys) as store:
            side = ItemSide(topology, store, app.producer.buffer, keys)
            half_life = settings.popularity_half_life_s
            guard.register("norms", side.rebuild_norms)
            guard.register("items", lambda parts: side.rebuild_lists(parts, event_now(), half_life))
            # A longer window than the user side's: each batch rewrites, changelogs and
            # republishes every item its deltas name, so fewer, larger batches cost far less
            # per event; the lists lag by at most the window.
            batches = _guarded_batches(
                stream,
                settings.item_batch_max_deltas,
                settings.item_batch_delay_s,
                side.process,
                "item side",
            )
            async for _ in batches:
                yield None

    return item_side


def _catalog_copy(app: faust.App, settings: Settings) -> ItemContent:
    """This worker's copy of the catalog, which its scoring reads (the content feature and
    the cold candidates), fed by a task from the items topic whatever partitions it owns."""
    content = ItemContent()

    @app.task
    async def catalog_follower() -> None:
        await follow_catalog(settings.kafka, settings.topic_items, content.apply)

    return content


@contextmanager
def _refreshing(
    app: faust.App, settings: Settings, side: UserSide, refreshers: list[Refresher]
) -> Iterator[Refresher]:
    """A ``Refresher`` of ``side``'s recent users in ``refreshers`` (a swap starts it) while
    the user side runs; its run in progress is stopped with it."""
    topic = settings.topic_events

    def owned() -> set[int]:
        """The events partitions assigned here; none while a rebalance (table recovery
        included) is under way, when the history rows may not be whole."""
        if app.rebalancing:
            return set()
        return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}

    loop = asyncio.get_running_loop()
    refresher = Refresher(side, owned, Pace.for_rate(settings.refresh_rate), loop=loop)
    refreshers.append(refresher)
    try:
        yield refresher
    finally:
        refreshers.remove(refresher)
        refresher.stop()


def _on_decision(
    journal: Callable[[Decision], None], refreshers: Sequence[Refresher]
) -> Callable[[Decision], None]:
    """The slot's decision hook (its executor thread): a swap starts each user side's refresh
    on the event loop, then every decision goes to the journal."""

    def decided(decision: Decision) -> None:
        if decision.accepted:
            for refresher in list(refreshers):
                refresher.start_soon(decision.version)
        journal(decision)

    return decided


@contextmanager
def _opened(cache: RecCache | None, settings: Settings, keys: CacheKeys) -> Iterator[RecCache]:
    """The agent's store: the given ``cache`` as is (left open, for tests), else the backend
    named by ``settings.redis``, closed when the agent stops."""
    store = cache or open_cache(settings.redis, keys)
    try:
        yield store
    finally:
        if cache is None:
            store.close()


async def _guarded_batches(
    stream: faust.StreamT,
    max_events: int,
    within_s: float,
    process: Callable[[list[Any]], Awaitable[None]],
    side: str,
) -> AsyncIterator[None]:
    """Feed ``process`` micro-batches of up to ``max_events`` taken within ``within_s``.

    ``take_events`` (events, not values): the dead letters need each message's position. A
    failed batch is logged and skipped: a bug must not stop the consumer for good (a crashed
    Faust agent stays down while the worker looks alive).
    """
    async for events in stream.take_events(max_events, within=within_s):  # type: ignore[attr-defined]
        try:
            await process(events)
        except Exception:
            log.exception("%s failed on a batch of %d events", side, len(events))
        yield None


def _agents(
    app: faust.App,
    settings: Settings,
    topology: Topology,
    slot: ModelSlot,
    sides: dict[str, Callable[[faust.StreamT], AsyncIterator[None]]],
    load_session_model: Callable[[str], Any],
) -> LivePathParts:
    """Register the agents (``sides``: name -> agent function of the user, item and catalog
    sides), the model-updates listener and the model-store poll timer."""

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
                decision = await slot.offer_async(update.path, trigger="update")
                log.info("session model update %s: %s", decision.version, decision.reason)
            except Exception:
                log.exception("session model update %s failed", update.version)
            yield None

    agent = app.agent(topology.events, name="live-path")(sides["live-path"])
    item_agent = app.agent(topology.deltas, name="item-side")(sides["item-side"])
    catalog_agent = app.agent(topology.items, name="catalog")(sides["catalog"])
    control_agent = app.agent(topology.control, name="control")(sides["control"])
    app.agent(topology.model_updates, name="model-updates")(model_updates)
    if settings.model_poll_s > 0:
        app.timer(settings.model_poll_s)(_poll(load_session_model))
    return LivePathParts(
        agent,
        topology.events,
        topology.dlq,
        topology.history,
        topology.deltas,
        item_agent,
        topology.item_stats,
        slot,
        catalog_agent,
        topology.items,
        control_agent,
        topology.control,
    )


def _control_side(
    app: faust.App,
    settings: Settings,
    topology: Topology,
    cache: RecCache | None,
    keys: CacheKeys,
    offsets: Offsets | None,
) -> Callable[[faust.StreamT], AsyncIterator[None]]:
    """The control agent: commands -> dead letters | a user forgotten (``ControlSide``)."""

    async def control_side(stream: faust.StreamT) -> AsyncIterator[None]:
        """commands -> dead letters | a user's history tombstone and Redis keys deleted"""
        with _opened(cache, settings, keys) as store:
            kafka = offsets or EventOffsets(settings.kafka, settings.topic_events, settings.app_id)
            side = ControlSide(topology, settings, store, keys, kafka, _flusher(app))
            try:
                limit, within = settings.batch_max_events, settings.batch_max_delay_s
                async for _ in _guarded_batches(stream, limit, within, side.process, "control"):
                    yield None
            finally:
                if isinstance(kafka, EventOffsets):
                    kafka.close()

    return control_side


def _checked_first(
    process: Callable[[list[Any]], Awaitable[None]], check: Callable[[], Awaitable[None]]
) -> Callable[[list[Any]], Awaitable[None]]:
    """``process`` with one ``check`` of the cache before its first batch. A new Redis gets
    its generation marker (over tables that are still empty) before this worker writes to it;
    left to the timer, the first check came after the first batches and took a new Redis for
    one that lost its data, re-seeding trending with all-time norms."""
    pending = [check]

    async def first_checked(events: list[Any]) -> None:
        if pending:
            await pending.pop()()
        await process(events)

    return first_checked


def _cache_guard(
    app: faust.App, settings: Settings, topology: Topology, store: RecCache
) -> tuple[CacheGuard, Callable[[], Awaitable[None]]]:
    """The guard against Redis losing its data, and its check, run every ``cache_check_s``
    and before the live path's first batch (not during a rebalance or a table recovery: the
    tables are incomplete then); the sides register their rebuild steps on it when they
    start. With ``cache_check_s`` 0 the check does nothing."""
    guard = CacheGuard(store, settings.event_partitions, settings.rebuild_wait_s)
    if settings.cache_check_s <= 0:

        async def unchecked() -> None:
            return None

        return guard, unchecked

    async def check_cache() -> None:
        # Everything is caught: an exception that leaves a Faust timer stops the whole worker.
        try:
            recovery = app.tables.recovery  # type: ignore[attr-defined]
            if app.rebalancing or recovery.in_recovery or not recovery.completed.is_set():
                return
            actives = app.assignor.assigned_actives()
            deltas, events = topology.deltas.get_topic_name(), topology.events.get_topic_name()
            items = sorted(tp.partition for tp in actives if tp.topic == deltas)
            users = sorted(tp.partition for tp in actives if tp.topic == events)
            await guard.check({"norms": items, "items": items, "users": users})
        except CacheUnavailable as exc:
            log.warning("generation marker not checked, cache unavailable: %s", exc)
        except Exception:
            log.exception("rebuilding the cache failed; the next check tries again")

    app.timer(settings.cache_check_s)(check_cache)
    return guard, check_cache


def _flusher(app: faust.App) -> Callable[[], Awaitable[None]]:
    """Waits until every table write queued so far is acknowledged by the broker: Faust's
    buffer emptied (its ``flush`` gives up after 0.1 s without a send, hence the loop), then
    the Kafka producer's in-flight batches."""

    async def flush() -> None:
        producer = app.producer
        while producer.buffer.size:  # type: ignore[attr-defined]
            await producer.buffer.flush()  # type: ignore[attr-defined]
        await producer.flush()

    return flush


def _live_path(
    store: RecCache,
    scorer: Scorer | None,
    slot: ModelSlot,
    keys: CacheKeys,
    settings: Settings,
    recorder: TelemetryRecorder | None = None,
    content: ItemContent | None = None,
) -> LivePath:
    """The per-batch logic over ``store``, scoring with ``scorer`` or an ``OnlineScorer``
    (reading the catalog in ``content``)."""
    return LivePath(
        store,
        scorer
        or OnlineScorer(
            store,
            slot,
            partitions=settings.event_partitions,
            keys=keys,
            history_len=settings.history_len,
            content=content,
            params=settings.scoring_params,
            session_slots=settings.session_slots,
        ),
        top_n=settings.top_n,
        half_life_s=settings.popularity_half_life_s,
        rec_ttl_s=settings.rec_ttl_s,
        history_len=settings.history_len,
        telemetry=recorder.record if recorder is not None else None,
        hitrate_sample=settings.hitrate_sample,
        feedback=settings.feedback,
    )


def _telemetry_recorder(
    store: RecCache, keys: CacheKeys, settings: Settings
) -> TelemetryRecorder | None:
    """Online HitRate@10 and freshness go to Redis next to the recs ;
    other backends (the in-memory one of tests) record none."""
    from stream_app.cache.redis_backend import RedisCache

    if not isinstance(store, RedisCache):
        return None
    worker_id = f"{settings.app_id}@{socket.gethostname()}:{os.getpid()}"
    return TelemetryRecorder(store.client, worker_id, TelemetryKeys(keys))


def _heartbeat(recorders: Sequence[TelemetryRecorder]) -> Callable[[], Any]:
    """The timer that keeps an idle worker registered (``/health`` reads the registry)."""

    async def worker_heartbeat() -> None:
        for recorder in recorders:
            try:
                await asyncio.to_thread(recorder.heartbeat)
            except Exception as exc:  # Redis down: the batches will say so too
                log.warning("worker heartbeat not written: %r", exc)

    return worker_heartbeat


def _poll(load: Callable[[str], Any]) -> Callable[[], Any]:
    async def poll_model_store() -> None:
        await load("poll")

    return poll_model_store


def _decision_journal(
    cache: RecCache | None, keys: CacheKeys, settings: Settings
) -> Callable[[Decision], None]:
    """Each session-model decision (a swap, or a refusal with the gate's reason) onto the
    dashboard's journal, ``CacheKeys.model_decisions``, through a store opened on first use
    (decisions are rare and made in the slot's executor thread)."""
    opened: list[RecCache] = []

    def record(decision: Decision) -> None:
        if not opened:
            opened.append(cache or open_cache(settings.redis, keys))
        entry = {
            "at_ms": decision.at_ms,
            "version": decision.version,
            "accepted": decision.accepted,
            "reason": decision.reason,
            "trigger": decision.trigger,
            "path": decision.path,
        }
        opened[0].append_journal(keys.model_decisions, [encode_entry(entry)], MODEL_DECISIONS_KEPT)

    return record
