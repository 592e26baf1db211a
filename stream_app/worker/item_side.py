"""The item side's steps for one batch of item deltas: decode (bad messages to the DLQ),
fold them into the ``item_stats`` rows, write the rows paced so the user side keeps flowing,
and publish each touched item's top-M neighbours and successors to Redis."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from models.online.stream.deltas import (
    MAX_ROW_PAIRS,
    MAX_SUCCESSORS,
    NEIGHBORS_M,
    ItemDelta,
    apply_deltas,
    published_lists,
)
from models.online.stream.partitions import key_partition
from stream_app.cache.base import CacheUnavailable, RecCache
from stream_app.cache.keys import CacheKeys
from stream_app.kafka.item_deltas import unpack_deltas
from stream_app.worker.dead_letters import send_once
from stream_app.worker.rebuild import REBUILD_CHUNK, RETRY_FIRST_S, RETRY_MAX_S
from stream_app.worker.records import letter_for
from stream_app.worker.topology import Topology

log = logging.getLogger(__name__)


class ItemSide:
    """One batch of item-delta messages into the item table and Redis (:meth:`process`)."""

    def __init__(self, topology: Topology, store: RecCache, buffer: Any, keys: CacheKeys) -> None:
        self.topology = topology
        self.store = store
        self.keys = keys
        #: Faust's producer buffer, watched by :func:`write_paced`
        self.buffer = buffer
        #: held by a batch and by a rebuild, so a rebuild never publishes a row's older list
        #: after a batch published its newer one
        self.lock = asyncio.Lock()

    async def process(self, events: Sequence[Any]) -> dict[bytes, dict]:
        """One batch (:meth:`process_batch`), never while a rebuild runs."""
        async with self.lock:
            return await self.process_batch(events)

    async def process_batch(self, events: Sequence[Any]) -> dict[bytes, dict]:
        """Returns the rows written. The decoding and row arithmetic run in a thread: done on
        the event loop, a 0.5 s batch stalled the user side for tens of ms. Only the table
        reads (dict lookups) and writes (changelog sends) stay on the loop. While Redis is
        down the batch is held and its lists published once it is back (a list left
        unpublished would stay stale until its item is touched again)."""
        deltas, rejected = await asyncio.to_thread(_unpacked, [e.value for e in events])
        letters = []
        for index, reason in rejected:
            # Only our user side writes here: a bad message is a bug or version skew. It goes
            # to the DLQ; the batch's good deltas are still applied.
            log.warning("item delta message to the DLQ: %s", reason)
            letters.append(letter_for(events[index], reason))
        await send_once(self.topology.dlq, self.store, self.keys, letters, "item_dlq")
        table = self.topology.item_stats
        current = {key: table.get(key) for key in {key for key, _ in deltas}}
        rows = await asyncio.to_thread(_folded, deltas, current)
        await write_paced(table, rows, self.buffer)
        pause = RETRY_FIRST_S
        while True:
            try:
                await asyncio.to_thread(_publish_neighbors, self.store, rows)
                return rows
            except CacheUnavailable as exc:
                log.warning(
                    "neighbours of %d items not published, cache unavailable, retry in %.1f s: "
                    "%s", len(rows), pause, exc,
                )  # fmt: skip
            await asyncio.sleep(pause)
            pause = min(pause * 2, RETRY_MAX_S)

    def owned_rows(self, partitions: Sequence[int]) -> dict[bytes, dict]:
        """The table's rows of ``partitions`` (a memory table may still hold rows of a
        partition it gave away in a rebalance: those are another worker's to publish)."""
        n, wanted = self.topology.item_stats.partitions, set(partitions)
        return {
            key: row
            for key, row in list(self.topology.item_stats.items())
            if row and key_partition(key.decode(), n) in wanted
        }

    async def rebuild_norms(self, partitions: Sequence[int]) -> int:
        """After Redis lost its data: the squared norms of the items of ``partitions`` (the
        cosines of every worker's lists need them first). Returns how many."""
        async with self.lock:
            rows = self.owned_rows(partitions)
            norms = {k.decode(): float(r.get("n", 0.0)) for k, r in rows.items()}
            await asyncio.to_thread(self.store.publish_neighbors, {}, norms)
            return len(norms)

    async def rebuild_lists(
        self, partitions: Sequence[int], now_ms: int, half_life_s: float
    ) -> int:
        """After Redis lost its data: the neighbour and successor lists of the items of
        ``partitions``, as a batch publishes them, and their trending seeds: each item absent
        from trending gets its all-time squared-weight sum (the row's norm) at ``now_ms``, an
        approximation (docs/stream.md, "Redis lost its data"). Returns the items published."""
        async with self.lock:
            rows = self.owned_rows(partitions)
            keys = list(rows)
            for at in range(0, len(keys), REBUILD_CHUNK):
                chunk = {k: rows[k] for k in keys[at : at + REBUILD_CHUNK]}
                await asyncio.to_thread(_publish_neighbors, self.store, chunk)
                seeds = [(k.decode(), float(r.get("n", 0.0)), now_ms) for k, r in chunk.items()]
                seeds = [s for s in seeds if s[1] > 0]
                await asyncio.to_thread(
                    self.store.update_trending, seeds, half_life_s, now_ms, 1, absent_only=True
                )
            return len(rows)


def _unpacked(
    values: Sequence[object],
) -> tuple[list[tuple[bytes, ItemDelta]], list[tuple[int, str]]]:
    """Every (item key, delta) of a batch of packed delta messages, in order, and (position,
    reason) of each message that is not one (its deltas are left out, the others kept).

    >>> from stream_app.kafka.item_deltas import pack_deltas
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
