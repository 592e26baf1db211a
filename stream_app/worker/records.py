"""The dead-letter record, a ``faust.Record``: what the worker writes to the DLQ topic.

The event contract itself is ``models.events`` (one validator, ``validate_event``, which the
worker applies to the raw bytes it reads). The record serializes as plain JSON without Faust's
``__faust`` metadata, so non-Faust consumers read it as it is.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import faust

#: Payloads above this are cut in the DLQ record (base64 grows 4/3, and the broker's default
#: message limit is 1 MiB: a huge bad message must not make its own dead letter unsendable).
MAX_DLQ_PAYLOAD_BYTES = 64 * 1024


class DeadLetter(faust.Record, serializer="json", include_metadata=False):
    """An event the worker could not accept, with why and where it came from.

    ``payload_b64`` holds the original value bytes (base64; empty for a null value), cut to
    ``MAX_DLQ_PAYLOAD_BYTES`` with ``truncated`` set, and ``payload_size`` the original length.
    """

    reason: str
    payload_b64: str
    payload_size: int
    truncated: bool
    topic: str
    partition: int
    offset: int
    message_timestamp_ms: int | None
    dead_at_ms: int

    def payload(self) -> bytes:
        """The original bytes (or their first ``MAX_DLQ_PAYLOAD_BYTES`` when truncated)."""
        return base64.b64decode(self.payload_b64)


def dead_letter(
    value: bytes | None,
    reason: str,
    *,
    topic: str,
    partition: int,
    offset: int,
    message_timestamp_ms: int | None = None,
    now_ms: int | None = None,
) -> DeadLetter:
    """Build the DLQ record for a rejected message value.

    >>> d = dead_letter(b"not json", "not valid UTF-8 JSON", topic="events", partition=1,
    ...                 offset=42, now_ms=1)
    >>> d.payload(), d.truncated, d.offset
    (b'not json', False, 42)
    """
    raw = b"" if value is None else bytes(value)
    kept = raw[:MAX_DLQ_PAYLOAD_BYTES]
    return DeadLetter(
        reason=reason[:1000],
        payload_b64=base64.b64encode(kept).decode("ascii"),
        payload_size=len(raw),
        truncated=len(kept) < len(raw),
        topic=topic,
        partition=partition,
        offset=offset,
        message_timestamp_ms=message_timestamp_ms,
        dead_at_ms=int(time.time() * 1000) if now_ms is None else now_ms,
    )


#: Characters of a dead letter's payload its journal entry shows.
PREVIEW_CHARS = 120


def journal_entry(letter: DeadLetter) -> dict[str, Any]:
    """What the dashboard lists of a dead letter (``stream_app.cache.journals``): where it
    came from, why, and the start of its payload as text.

    >>> entry = journal_entry(dead_letter(b"{oops", "not valid JSON", topic="ev", partition=0,
    ...                                   offset=7, now_ms=5))
    >>> entry["reason"], entry["offset"], entry["preview"]
    ('not valid JSON', 7, '{oops')
    """
    return {
        "reason": letter.reason,
        "topic": letter.topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "dead_at_ms": letter.dead_at_ms,
        "payload_size": letter.payload_size,
        "preview": letter.payload()[:PREVIEW_CHARS].decode("utf-8", "replace"),
    }


def letter_for(event: Any, reason: str) -> DeadLetter:
    """The DLQ record for a rejected Faust event: its bytes, where it came from (which is also
    its DLQ key, ``dead_letters.position_key``; the original message key is not kept)."""
    message = event.message
    raw = event.value if isinstance(event.value, bytes | bytearray) else None
    return dead_letter(
        raw,
        reason,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        message_timestamp_ms=int(message.timestamp * 1000) if message.timestamp else None,
    )
