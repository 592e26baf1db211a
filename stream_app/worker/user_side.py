"""The user side's steps for one micro-batch, in the data's order: validate, dead letters,
skip what was counted before, histories, item deltas, then score, write and telemetry
(``LivePath.process``). Where a batch runs (loop or thread) and why the deltas are acknowledged
before the counted marks move: docs/stream.md, "How a batch is processed, and why"."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, NamedTuple

from models.events import DEFAULT_FEEDBACK, Feedback, Interaction, InvalidEvent
from models.online.stream.deltas import (
    PAIR_WINDOW,
    ItemDelta,
    deltas_by_item,
    merge_history,
    transitions,
    user_side_batch,
)
from models.online.stream.partitions import key_partition
from models.online.stream.reasons import act_of, merge_acts
from stream_app.cache.base import CacheUnavailable, RecCache
from stream_app.cache.keys import CacheKeys, counted_marks, sent_marks
from stream_app.kafka.item_deltas import pack_deltas
from stream_app.settings import Settings
from stream_app.worker.dead_letters import send_once
from stream_app.worker.live_path import BatchResult, LivePath, parse_message
from stream_app.worker.model_slot import ModelSlot
from stream_app.worker.rebuild import REBUILD_CHUNK, RETRY_FIRST_S, RETRY_MAX_S
from stream_app.worker.records import DeadLetter, letter_for
from stream_app.worker.refresh import RecentUsers
from stream_app.worker.topology import Topology

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SortedBatch:
    """A micro-batch split into accepted events and dead letters."""

    valid: list[Interaction]
    dead: list[DeadLetter]
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

    def split(self, marks: Mapping[int, int]) -> tuple[SortedBatch, SortedBatch]:
        """(the valid events at or below ``marks``, the others), dead letters with neither.

        >>> from models.events import Interaction
        >>> b = SortedBatch([Interaction("u", "a", "view", 1), Interaction("u", "b", "view", 2)],
        ...                 [], [1, 2], [(0, 7), (0, 8)])
        >>> [[e.item_id for e in part.valid] for part in b.split({0: 7})]
        [['a'], ['b']]
        """
        below = [0 <= o <= marks.get(p, -1) for p, o in self.positions]
        parts = []
        for wanted in (True, False):
            at = [i for i, b in enumerate(below) if b is wanted]
            parts.append(
                SortedBatch(
                    [self.valid[i] for i in at],
                    [],
                    [self.kafka_ts_ms[i] for i in at],
                    [self.positions[i] for i in at],
                )
            )
        return parts[0], parts[1]

    def last_offsets(self) -> dict[int, int]:
        """partition -> highest offset of the valid events."""
        out: dict[int, int] = {}
        for p, o in self.positions:
            if o >= 0:
                out[p] = max(o, out.get(p, -1))
        return out


def sort_batch(events: Sequence[Any]) -> SortedBatch:
    """Validate each Faust event of a batch; never raises on bad input."""
    valid: list[Interaction] = []
    dead: list[DeadLetter] = []
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


def batch_deltas(
    batch: SortedBatch, before: dict[str, list[str]], feedback: Feedback = DEFAULT_FEEDBACK
) -> dict[tuple[str, int], ItemDelta]:
    """(item, source partition) -> aggregated delta of a batch; ``before`` = histories before it.

    One group per source partition, so each delta carries ``src`` = (partition, last offset)
    and the item side can skip it if it is ever resent. A negative event (``feedback``) pairs
    with nothing and is no step of a transition.

    >>> from models.events import Interaction
    >>> b = SortedBatch([Interaction("u", "b", "view", 2)], [], [2], [(1, 9)])
    >>> d = batch_deltas(b, {"u": ["a"]})
    >>> d[("a", 1)].pairs, d[("b", 1)].src
    ({'b': 1.0}, (1, 9))
    """
    groups: dict[int, list[Interaction]] = {}
    last: dict[int, int] = {}
    is_negative, weight = feedback.is_negative, feedback.weight
    for event, (p, o) in zip(batch.valid, batch.positions, strict=True):
        last[p] = max(o, last.get(p, -1))
        if not is_negative(event):
            groups.setdefault(p, []).append(event)
    out: dict[tuple[str, int], ItemDelta] = {}
    for p, events in groups.items():
        per_user: dict[str, list[tuple[str, float]]] = {}
        for e in sorted(events, key=lambda e: e.timestamp_ms):
            per_user.setdefault(e.user_id, []).append((e.item_id, weight(e)))
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


def stamped_deltas(
    batch: SortedBatch,
    before: dict[str, list[str]],
    sent: Mapping[int, int],
    feedback: Feedback,
    history_len: int,
) -> list[dict[tuple[str, int], ItemDelta]]:
    """The batch's deltas, in one group, or in two when it replays events at or below the
    ``sent`` marks (a crashed batch's): theirs first, stamped with their own last offset, then
    the others' over the histories the first left (``UserSide.send_deltas`` says why).

    >>> from models.events import Interaction
    >>> b = SortedBatch([Interaction("u", "b", "view", 1), Interaction("u", "c", "view", 2)],
    ...                 [], [1, 2], [(0, 5), (0, 6)])
    >>> [sorted((i, d.src) for (i, _), d in g.items()) for g in stamped_deltas(
    ...     b, {"u": ["a"]}, {0: 5}, DEFAULT_FEEDBACK, 10)]
    [[('a', (0, 5)), ('b', (0, 5))], [('a', (0, 6)), ('b', (0, 6)), ('c', (0, 6))]]
    """
    replayed, rest = batch.split(sent)
    if not replayed.valid:
        return [batch_deltas(rest, before, feedback)]
    fed = feedback_by_user(replayed.valid, feedback)
    moved = {u: merge_history(before.get(u, []), f.positives, history_len) for u, f in fed.items()}
    return [
        batch_deltas(replayed, before, feedback),
        batch_deltas(rest, {**before, **moved}, feedback),
    ]


class UserRow(NamedTuple):
    """A user's row of the history table: her items (distinct, most recent last: the sources
    of her candidates), the items she said no to (never recommended to her), and her newest
    act on her recent items when it was more than a view (the verb of a reason, ``acts``).

    Stored as the plain list of items while she has neither, so a stream of views keeps the
    rows (and the changelog) it always had; as ``{"items", "excluded", "acts"}`` (the empty
    ones left out) otherwise. All in the one changelogged row: a restart restores them
    together, and deleting the row forgets them all.

    >>> UserRow.stored(["a"]), UserRow.stored({"items": ["a"], "excluded": ["x"]}).to_stored()
    (UserRow(items=['a'], excluded=[], acts={}), {'items': ['a'], 'excluded': ['x']})
    """

    items: list[str]
    excluded: list[str]
    acts: dict[str, str]

    @classmethod
    def stored(cls, raw: Any) -> UserRow:
        if isinstance(raw, dict):
            acts = raw.get("acts")
            return cls(
                list(raw.get("items") or []),
                list(raw.get("excluded") or []),
                dict(acts) if isinstance(acts, dict) else {},
            )
        return cls(list(raw or []), [], {})

    def to_stored(self) -> list[str] | dict[str, Any]:
        if not self.excluded and not self.acts:
            return self.items
        out: dict[str, Any] = {"items": self.items}
        if self.excluded:
            out["excluded"] = self.excluded
        if self.acts:
            out["acts"] = self.acts
        return out


class UserFeedback(NamedTuple):
    """One user's events of a batch, in event-time order: positive items, negative items,
    and the positives' acts ((item, act) for :func:`merge_acts`; a view's act is None)."""

    positives: list[str]
    negatives: list[str]
    acts: list[tuple[str, str | None]]


def feedback_by_user(events: Sequence[Interaction], feedback: Feedback) -> dict[str, UserFeedback]:
    """Each user's feedback of a batch, in event-time order (ties in arrival order), as
    ``items_by_user`` orders them.

    >>> ev = [Interaction("u", "x", "dislike", 2), Interaction("u", "a", "rating", 1, 5.0)]
    >>> feedback_by_user(ev, DEFAULT_FEEDBACK)["u"]
    UserFeedback(positives=['a'], negatives=['x'], acts=[('a', 'rating:5')])
    """
    out: dict[str, UserFeedback] = {}
    is_negative = feedback.is_negative
    for event in sorted(events, key=lambda e: e.timestamp_ms):
        found = out.get(event.user_id)
        if found is None:
            found = out[event.user_id] = UserFeedback([], [], [])
        if is_negative(event):
            found.negatives.append(event.item_id)
        else:
            found.positives.append(event.item_id)
            found.acts.append((event.item_id, act_of(event.event_type, event.value)))
    return out


class MergedRows(NamedTuple):
    """A batch's users' rows merged (:meth:`UserSide.merge_histories`): histories before and
    after the batch, and the exclusions and acts after it of the users who have any."""

    before: dict[str, list[str]]
    after: dict[str, list[str]]
    excluded: dict[str, list[str]]
    acts: dict[str, dict[str, str]]


class UserSide:
    """One micro-batch of ``events`` from topic to Redis (:meth:`process`), step by step."""

    def __init__(
        self,
        topology: Topology,
        settings: Settings,
        store: RecCache,
        path: LivePath,
        slot: ModelSlot,
        keys: CacheKeys,
    ) -> None:
        self.topology = topology
        self.settings = settings
        self.store = store
        self.keys = keys
        self.path = path
        self.slot = slot
        #: how events count (weights, negatives): the settings', as ``streamrec evaluate``'s
        self.feedback = settings.feedback
        #: the users whose lists this side wrote lately, by partition: a swap refreshes them
        self.recent = RecentUsers(settings.refresh_window_s, settings.refresh_max_users)
        #: held by each batch, by each chunk of a refresh (:meth:`refresh`) and by a rebuild
        #: (:meth:`rebuild`): all use the scorer, which keeps per-batch state and may run in a
        #: thread, and a rebuild must never interleave with a batch
        self.scoring = asyncio.Lock()
        #: partition -> highest offset this worker processed and wrote: a rebuild re-writes
        #: the marks from here, so a replay after a crash is not counted twice
        self.marks: dict[int, int] = {}

    async def process(self, events: Sequence[Any]) -> None:
        """The data's path: each step below is one method. Then its users are recent."""
        async with self.scoring:
            checked = await self._process(events)
        self.recent.touch(
            (event.user_id, partition)
            for event, (partition, _) in zip(checked.valid, checked.positions, strict=True)
        )

    async def refresh(self, users: Sequence[str]) -> int:
        """Recompute these users' lists from their history rows between two batches
        (``LivePath.refresh``, where a batch would run: on the loop or in a thread); a user
        without a row (forgotten) is skipped. Returns how many lists were stored."""
        async with self.scoring:
            # Before the rows are read: a list computed later came from a history as new.
            read_at_ms = int(time.time() * 1000)
            rows = self.rows_of(users)
            work = functools.partial(
                self.path.refresh, rows.after, read_at_ms, rows.excluded, rows.acts
            )
            if self.runs_on_loop():
                return work()
            return await asyncio.to_thread(work)

    async def _process(self, events: Sequence[Any]) -> SortedBatch:
        checked = sort_batch(events)
        await send_once(self.topology.dlq, self.store, self.keys, checked.dead, "dlq")
        on_loop = self.runs_on_loop()
        # Idempotence: events at or below the marks of the batch's *last* step (recs +
        # counters) were fully processed before a restart: skip them. Events between those
        # and the trending marks are processed again; trending skips them.
        marks, sent = await self.counted(on_loop)
        # Marks unreadable: Redis is failing, and this batch's retries must not hold the loop.
        on_loop = on_loop and marks is not None
        batch = checked.fresh(marks or {})
        before, histories, excluded, acts = self.merge_histories(checked.valid)
        pending = await self.send_deltas(batch, before, sent, on_loop)
        work = functools.partial(
            self.path.process,
            batch.valid,
            histories,
            kafka_ts_ms=batch.kafka_ts_ms,
            hwm=(self.settings.topic_events, batch.positions),
            before=before,
            excluded=excluded,
            acts=acts,
        )
        if await self.score_and_write(work, pending, on_loop):
            self.note_written(batch)
        return checked

    def note_written(self, batch: SortedBatch) -> None:
        """Remember the batch's last offsets (a rebuild re-writes the marks from them)."""
        for p, o in batch.last_offsets().items():
            self.marks[p] = max(o, self.marks.get(p, -1))

    def runs_on_loop(self) -> bool:
        """On the event loop unless told, a session model serves (Keras inference must not
        block the loop), or Redis is failing (its retries would hold the loop for seconds)."""
        return (
            not self.settings.batch_in_thread
            and self.slot.current() is None
            and not self.path.pending_cache_errors
        )

    async def counted(self, on_loop: bool) -> tuple[dict[int, int] | None, dict[int, int] | None]:
        """The counted and the sent high-water marks of the events topic, by partition (None
        when the cache is down: then nothing is skipped, the transactions still check the
        counted marks)."""
        topic = self.settings.topic_events

        def read() -> tuple[dict[int, int] | None, dict[int, int] | None]:
            counted = _read_marks(self.store, counted_marks(topic))
            sent = _read_marks(self.store, sent_marks(topic)) if counted is not None else None
            return counted, sent

        return read() if on_loop else await asyncio.to_thread(read)

    def merge_histories(self, valid: Sequence[Interaction]) -> MergedRows:
        """(histories before the batch, histories after it, exclusions and acts after it) of
        the batch's users (exclusions and acts only of those who have any); the table row of
        each is written once. Positive events extend the history, negative ones the exclusions
        (:class:`UserRow`). *Every* valid event is merged, replayed ones included: the merge
        is idempotent, and after a SIGKILL the table's changelog may lack events the Redis
        marks already count (its writes are buffered)."""
        table = self.topology.history
        cap = self.settings.history_len
        before: dict[str, list[str]] = {}
        after: dict[str, list[str]] = {}
        excluded: dict[str, list[str]] = {}
        acts: dict[str, dict[str, str]] = {}
        for user, fed in feedback_by_user(valid, self.feedback).items():
            key = user.encode()
            row = UserRow.stored(table.get(key))
            before[user] = row.items
            items = merge_history(row.items, fed.positives, cap)
            merged = UserRow(
                items,
                merge_history(row.excluded, fed.negatives, cap) if fed.negatives else row.excluded,
                merge_acts(row.acts, fed.acts, items) if row.acts or fed.acts else {},
            )
            table[key] = merged.to_stored()
            after[user] = merged.items
            if merged.excluded:
                excluded[user] = merged.excluded
            if merged.acts:
                acts[user] = merged.acts
        return MergedRows(before, after, excluded, acts)

    async def send_deltas(
        self,
        batch: SortedBatch,
        before: dict[str, list[str]],
        sent: Mapping[int, int] | None,
        on_loop: bool,
    ) -> list[Any]:
        """The batch's item co-occurrence increments, one message per target partition (not
        per item: Faust's per-message cost dominated); returns the sends' futures.

        Exactly once across a crash: the sent marks move to the batch's last offsets before
        anything is sent. Events at or below the marks read at the batch's start (``sent``)
        are a crashed batch's, whose deltas may be applied already: they get deltas of their
        own, stamped with their own last offset, which an item row that has them skips (a
        replay's batches need not end where the crashed one did). ``sent`` is None when the
        marks could not be read: Redis is down, and trying to move them would only hold the
        batch longer."""
        history_len = self.settings.history_len
        parts = stamped_deltas(batch, before, sent or {}, self.feedback, history_len)
        if sent is not None:
            await self.mark_sent(batch.last_offsets(), on_loop)
        futures = []
        for deltas in parts:
            for target, value in pack_deltas(deltas, self.settings.event_partitions).items():
                sent_to = self.topology.deltas.send(key=b"deltas", value=value, partition=target)
                futures.append(await sent_to)
        return futures

    async def mark_sent(self, last: Mapping[int, int], on_loop: bool) -> None:
        """Move the sent marks up (a Redis outage is logged: the deltas still go, and only a
        crash before Redis is back could apply some twice)."""
        if not last:
            return
        name = sent_marks(self.settings.topic_events)
        try:
            if on_loop:
                self.store.raise_marks(name, last)
            else:
                await asyncio.to_thread(self.store.raise_marks, name, last)
        except CacheUnavailable as exc:
            log.warning("sent marks not moved, cache unavailable: %s", exc)

    async def score_and_write(
        self, work: Callable[..., BatchResult], pending: Sequence[Any], on_loop: bool
    ) -> bool:
        """Run ``work`` (``LivePath.process``: trending, learning, scoring, the Redis writes
        and the telemetry) once the deltas are acknowledged: a crash can then resend a batch's
        deltas (the item side skips one it applied) but never lose them. While Redis is
        down the batch is held and its failed step retried (0.5 s doubling to 30 s): dropped,
        its events would never be counted (their offsets are committed). Returns whether the
        batch was written."""
        if on_loop:
            await _all_acked(pending)
            result = work()
        else:
            acked = _acks(pending, asyncio.get_running_loop())
            result = await asyncio.to_thread(work, durable=acked)
        pause = RETRY_FIRST_S
        while result.degraded and result.retry is not None:
            log.warning(
                "Redis unavailable: batch of %d events held, retry in %.1f s", result.events, pause
            )
            await asyncio.sleep(pause)
            pause = min(pause * 2, RETRY_MAX_S)
            result = await asyncio.to_thread(result.retry)
        return not result.degraded

    async def rebuild(self, partitions: Sequence[int], now_ms: int) -> int:
        """After Redis lost its data: the lists of this worker's users of ``partitions`` (the
        most recently active first, at most ``rebuild_users``) through the live scoring, the
        rankers' checkpoints and the marks from memory. Returns the lists written."""
        async with self.scoring:
            rows = self.active_rows(partitions)
            by_part: dict[int, list[str]] = {p: [] for p in partitions}
            for user in rows.after:
                by_part[key_partition(user, self.settings.event_partitions)].append(user)
            written = 0
            for part, users in by_part.items():
                # one partition per call: each list names its own partition's ranker
                for at in range(0, max(len(users), 1), REBUILD_CHUNK):
                    chunk = {u: rows.after[u] for u in users[at : at + REBUILD_CHUNK]}
                    excluded = {u: rows.excluded[u] for u in chunk if u in rows.excluded}
                    acts = {u: rows.acts[u] for u in chunk if u in rows.acts}
                    rebuild = functools.partial(self.path.rebuild, acts=acts)
                    written += await asyncio.to_thread(rebuild, chunk, excluded, [part], now_ms)
            marks = {p: o for p, o in self.marks.items() if p in set(partitions)}
            topic = self.settings.topic_events
            for name in (topic, counted_marks(topic)):
                await asyncio.to_thread(self.store.raise_marks, name, marks)
            return written

    def active_rows(self, partitions: Sequence[int]) -> MergedRows:
        """The rows of at most ``rebuild_users`` users of ``partitions``: those of the latest
        batches first (the refresh's recent users), then the table's others (a restarted worker
        remembers no batch); ``before`` is left empty."""
        n, wanted = self.settings.event_partitions, set(partitions)
        recent = [user for user, _ in self.recent.select(partitions)]
        known = set(recent)
        others = (k.decode() for k in list(self.topology.history.keys()))
        users = chain(
            recent, (u for u in others if u not in known and key_partition(u, n) in wanted)
        )
        return self.rows_of(users, self.settings.rebuild_users)

    def rows_of(self, users: Iterable[str], cap: int | None = None) -> MergedRows:
        """The history rows of those ``users`` that have one (at most ``cap``), as
        :class:`MergedRows` with ``before`` empty: a forgotten user has none."""
        table = self.topology.history
        rows = MergedRows({}, {}, {}, {})
        for user in users:
            raw = table.get(user.encode())
            if not raw:
                continue
            row = UserRow.stored(raw)
            rows.after[user] = row.items
            if row.excluded:
                rows.excluded[user] = row.excluded
            if row.acts:
                rows.acts[user] = row.acts
            if cap is not None and len(rows.after) >= cap:
                break
        return rows


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


def _read_marks(store: RecCache, topic: str) -> dict[int, int] | None:
    """High-water marks, or None when the cache is down."""
    try:
        return store.read_hwm(topic)
    except Exception as exc:
        log.warning("high-water marks unavailable: %r", exc)
        return None
