"""Dead letters, each sent and counted once: the user side's rejected events and the item
side's rejected delta messages go through :func:`send_once`.

A dead letter is keyed by its source position (``topic/partition/offset``), skipped when that
position is at or below its topic's dead-letter marks, and counted by ``RecCache.count_once``
once the broker has acknowledged it. A restart or rebalance that replays a batch therefore
neither resends nor recounts its dead letters; only a crash between the acknowledgement and the
count (one Redis round trip) can send one twice, with the same key, and it is still counted
once. Why not Kafka transactions: docs/stream.md, "Dead letters".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from stream_app.cache.base import CacheUnavailable, RecCache
from stream_app.cache.journals import DEAD_LETTERS_KEPT, encode_entry
from stream_app.cache.keys import CacheKeys
from stream_app.worker.records import DeadLetter, journal_entry

log = logging.getLogger(__name__)

#: How long a batch waits for the broker to acknowledge its dead letters before it gives up
#: (the batch is then logged as failed, as when its item deltas are not acknowledged).
DEAD_LETTER_ACK_TIMEOUT_S = 60.0


def dead_marks(topic: str) -> str:
    """The marks name (``CacheKeys.hwm(name)``) of ``topic``'s dead letters, next to the
    counted events' marks (``counted_marks``).

    >>> CacheKeys("streamrec:v1").hwm(dead_marks("events"))
    'streamrec:v1:hwm:events:dead'
    """
    return f"{topic}:dead"


def position_key(letter: DeadLetter) -> bytes:
    """The DLQ message key: where the rejected message was. Readers deduplicate by it.

    >>> from stream_app.worker.records import dead_letter
    >>> position_key(dead_letter(b"x", "bad", topic="events", partition=2, offset=41))
    b'events/2/41'
    """
    return f"{letter.topic}/{letter.partition}/{letter.offset}".encode()


def fresh_letters(letters: Sequence[DeadLetter], marks: dict[int, int]) -> list[DeadLetter]:
    """The letters past their partition's mark (offset -1, an unknown position: always).

    >>> from stream_app.worker.records import dead_letter
    >>> mk = lambda o: dead_letter(b"x", "bad", topic="t", partition=0, offset=o)
    >>> [d.offset for d in fresh_letters([mk(4), mk(5), mk(-1)], {0: 4})]
    [5, -1]
    """
    return [d for d in letters if _offset(d) < 0 or _offset(d) > marks.get(d.partition, -1)]


def _offset(letter: DeadLetter) -> int:
    """The letter's source offset, -1 when unknown (a local channel has none)."""
    return letter.offset if isinstance(letter.offset, int) else -1


async def send_once(
    dlq: Any, store: RecCache, keys: CacheKeys, letters: Sequence[DeadLetter], stat: str
) -> int:
    """Send the ``letters`` not sent before to the ``dlq`` topic, wait for the broker, count
    them under ``stat`` and journal them for the dashboard; returns how many were counted.

    ``letters`` come from one source topic. With the cache down they are all sent (a dead
    letter is never dropped) and the counter misses them, which the log says.
    """
    if not letters:
        return 0
    marks_name = dead_marks(letters[0].topic)
    try:
        fresh = fresh_letters(letters, await asyncio.to_thread(store.read_hwm, marks_name))
    except CacheUnavailable as exc:
        log.warning("dead-letter marks unreadable, sending all %d: %s", len(letters), exc)
        fresh = list(letters)
    if not fresh:
        return 0
    sends = [await dlq.send(key=position_key(letter), value=letter) for letter in fresh]
    futures = [f for f in sends if isinstance(f, asyncio.Future)]
    if futures:
        await asyncio.wait_for(asyncio.gather(*futures), DEAD_LETTER_ACK_TIMEOUT_S)
    positions = [(int(letter.partition or 0), _offset(letter)) for letter in fresh]
    try:
        counted = await asyncio.to_thread(store.count_once, stat, marks_name, positions)
        entries = [encode_entry(journal_entry(letter)) for letter in fresh]
        await asyncio.to_thread(store.append_journal, keys.dead_letters, entries, DEAD_LETTERS_KEPT)
    except CacheUnavailable as exc:
        log.warning("%d dead letters sent but not counted or journaled: %s", len(fresh), exc)
        return 0
    return int(counted)
