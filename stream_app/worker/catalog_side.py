"""The catalog side's steps for one batch of the compacted items topic: parse each record or
tombstone (what breaks the contract goes to the DLQ with its reason), keep each item's newest
change, and mirror the batch to Redis in one atomic step. Why Redis and no Faust table:
docs/stream.md, "The item catalog"."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from models.catalog import InvalidItem, ItemRecord, parse_item_message
from stream_app.cache.base import CacheUnavailable, RecCache
from stream_app.cache.keys import CacheKeys
from stream_app.worker.dead_letters import send_once
from stream_app.worker.records import DeadLetter, letter_for
from stream_app.worker.topology import Topology

log = logging.getLogger(__name__)

#: Starts the reason of a catalog dead letter, so the journal tells it from a rejected event.
REASON_PREFIX = "item record: "


def sort_catalog(
    events: Sequence[Any],
) -> tuple[dict[str, ItemRecord | None], list[DeadLetter]]:
    """item id -> its newest record in the batch (None: a tombstone), and the dead letters;
    never raises on bad input. The topic has one partition, so the batch is in publish order
    and the last message of a key is the one compaction keeps."""
    changes: dict[str, ItemRecord | None] = {}
    dead: list[DeadLetter] = []
    for event in events:
        key = event.message.key
        value = event.value
        try:
            if not isinstance(key, bytes | None) or not isinstance(value, bytes | None):
                raise InvalidItem("key and value must be bytes")
            item_id, record = parse_item_message(key, value)
        except InvalidItem as exc:
            dead.append(letter_for(event, f"{REASON_PREFIX}{exc}"))
            continue
        changes.pop(item_id, None)  # re-inserted: the dict's order is the order applied
        changes[item_id] = record
    return changes, dead


class CatalogSide:
    """One batch of the items topic into Redis (:meth:`process`).

    Changes that could not be written (Redis down after its retries) are kept and written
    with the next batch, merged under the newer ones: every write is a whole record or a
    delete, so only the newest change of an item matters.
    """

    def __init__(self, topology: Topology, store: RecCache, keys: CacheKeys) -> None:
        self.topology = topology
        self.store = store
        self.keys = keys
        #: item id -> newest change not yet in Redis
        self.pending: dict[str, ItemRecord | None] = {}

    async def process(self, events: Sequence[Any]) -> dict[str, ItemRecord | None]:
        """Returns the changes written to Redis (none while it is down)."""
        changes, dead = sort_catalog(events)
        for letter in dead:
            log.warning("item record to the DLQ: %s", letter.reason)
        await send_once(self.topology.dlq, self.store, self.keys, dead, "catalog_dlq")
        for item_id, record in changes.items():
            self.pending.pop(item_id, None)
            self.pending[item_id] = record
        if not self.pending:
            return {}
        batch = dict(self.pending)
        try:
            await asyncio.to_thread(self.store.write_catalog, batch)
        except CacheUnavailable as exc:
            log.warning("%d catalog changes kept for the next batch: %s", len(batch), exc)
            return {}
        self.pending.clear()
        return batch
