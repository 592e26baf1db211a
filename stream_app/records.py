"""Wire schemas as ``faust.Record``: the event contract and the dead-letter record.

The worker reads the events topic as raw bytes and validates with
``models.events.validate_event`` (the one validator), so ``Event`` is for Faust code that
*produces* or inspects events (``faust -A stream_app.app:app send``, tests, other agents), and
``DeadLetter`` is what the worker writes to the DLQ topic. Both serialize as plain JSON without
Faust's ``__faust`` metadata, so non-Faust consumers read them as they are.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import faust

from models.events import Interaction, validate_event

#: Payloads above this are cut in the DLQ record (base64 grows 4/3, and the broker's default
#: message limit is 1 MiB: a huge bad message must not make its own dead letter unsendable).
MAX_DLQ_PAYLOAD_BYTES = 64 * 1024


class Event(faust.Record, serializer="json", include_metadata=False):
    """One user event in the contract (``timestamp`` is epoch milliseconds).

    Examples
    --------
    >>> e = Event(user_id="u1", item_id="i1", event_type="view", timestamp=1700000000000)
    >>> e.to_interaction().timestamp_ms
    1700000000000
    >>> Event.from_interaction(e.to_interaction()) == e
    True
    """

    user_id: str
    item_id: str
    event_type: str
    timestamp: int
    value: float | None = None
    session_id: str | None = None
    context: dict[str, Any] | None = None

    def to_interaction(self) -> Interaction:
        """Validate through the contract's one validator (raises ``InvalidEvent``)."""
        payload = {k: v for k, v in self.asdict().items() if v is not None}
        return validate_event(payload)

    @classmethod
    def from_interaction(cls, event: Interaction) -> Event:
        return cls(**event.to_json_dict())


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
