"""The event contract as plain Python: what every model, evaluator and producer agrees an event is.

Kept free of Faust and Kafka so learning code and evaluation run without any infrastructure; the
worker validates the bytes it reads with :func:`validate_event`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

EVENT_TYPES: tuple[str, ...] = ("view", "click", "add_to_cart", "purchase", "rating")

#: Implicit-feedback strength of each event type (view < click < add_to_cart < purchase).
#: Ratings are weighted by value instead, see :func:`event_weight`.
EVENT_TYPE_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 2.0,
    "add_to_cart": 3.0,
    "purchase": 5.0,
    "rating": 1.0,
}

#: Epoch-millisecond timestamps below this (1973-03-03) are almost surely seconds by mistake.
MIN_TIMESTAMP_MS = 100_000_000_000
MAX_ID_LENGTH = 256


class InvalidEvent(ValueError):
    """An event breaks the contract; ``str(exc)`` is the reason written to the dead-letter topic."""


@dataclass(frozen=True, slots=True)
class Interaction:
    """One user event, validated. IDs are strings on the wire whatever the source used."""

    user_id: str
    item_id: str
    event_type: str
    timestamp_ms: int
    value: float | None = None
    session_id: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "user_id": self.user_id,
            "item_id": self.item_id,
            "event_type": self.event_type,
            "timestamp": self.timestamp_ms,
        }
        if self.value is not None:
            out["value"] = self.value
        if self.session_id is not None:
            out["session_id"] = self.session_id
        return out


def event_weight(event: Interaction) -> float:
    """How strongly an event says "the user likes this item".

    Ratings on a 1-5 scale map to 0.2..1.0 of a purchase-strength signal, so a 5-star rating counts
    as much as a purchase and a 1-star one less than a view.
    """
    if event.event_type == "rating":
        rating = 3.0 if event.value is None else event.value
        return max(rating, 0.0) / 5.0 * EVENT_TYPE_WEIGHTS["purchase"]
    return EVENT_TYPE_WEIGHTS[event.event_type]


def valid_id(raw: Any, name: str) -> str:
    """``raw`` as the contract stores an id (a string, stripped), or ``InvalidEvent`` naming the
    rule it breaks: one rule for the events and for every id the read API accepts.

    >>> valid_id(" 196 ", "user_id"), valid_id(7, "item_id")
    ('196', '7')
    >>> valid_id("x" * 257, "item_id")
    Traceback (most recent call last):
    ...
    models.events.InvalidEvent: item_id longer than 256 characters
    """
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise InvalidEvent(f"{name} must be a non-empty string or integer")
    text = str(raw).strip()
    if not text:
        raise InvalidEvent(f"{name} must be a non-empty string or integer")
    if len(text) > MAX_ID_LENGTH:
        raise InvalidEvent(f"{name} longer than {MAX_ID_LENGTH} characters")
    return text


def validate_event(payload: Any) -> Interaction:
    """Check a decoded JSON object against the contract and return the typed event.

    >>> validate_event({"user_id": 7, "item_id": "i1", "event_type": "view",
    ...                 "timestamp": 1700000000000}).user_id
    '7'
    >>> validate_event({"user_id": "u", "item_id": "i", "event_type": "like", "timestamp": 1})
    Traceback (most recent call last):
    ...
    models.events.InvalidEvent: event_type 'like' is not one of view, click, add_to_cart, ...
    """
    if not isinstance(payload, Mapping):
        raise InvalidEvent("event must be a JSON object")
    user_id = valid_id(payload.get("user_id"), "user_id")
    item_id = valid_id(payload.get("item_id"), "item_id")
    event_type = payload.get("event_type")
    if event_type not in EVENT_TYPES:
        raise InvalidEvent(f"event_type {event_type!r} is not one of {', '.join(EVENT_TYPES)}")
    timestamp = payload.get("timestamp")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        raise InvalidEvent("timestamp must be epoch milliseconds (a number)")
    if not math.isfinite(timestamp) or timestamp < MIN_TIMESTAMP_MS:
        raise InvalidEvent("timestamp must be epoch milliseconds (looks like seconds or invalid)")
    value = payload.get("value")
    if value is not None:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise InvalidEvent("value must be a finite number")
        value = float(value)
    if event_type == "rating" and value is None:
        raise InvalidEvent("a rating event needs a numeric value")
    session_id = payload.get("session_id")
    if session_id is not None:
        if isinstance(session_id, bool) or not isinstance(session_id, str | int):
            raise InvalidEvent("session_id must be a string or integer")
        session_id = str(session_id)
    context = payload.get("context")
    if context is not None and not isinstance(context, Mapping):
        raise InvalidEvent("context must be a JSON object")
    return Interaction(
        user_id=user_id,
        item_id=item_id,
        event_type=event_type,
        timestamp_ms=int(timestamp),
        value=value,
        session_id=session_id,
    )


def decode_event(raw: bytes) -> Interaction:
    """Bytes off the wire to a validated event; any failure is an ``InvalidEvent`` with a reason."""
    try:
        payload = orjson.loads(raw)  # ~4x json's speed; the worker decodes every event
    except (UnicodeDecodeError, orjson.JSONDecodeError) as exc:
        raise InvalidEvent(f"not valid UTF-8 JSON: {exc}") from None
    return validate_event(payload)


def encode_event(event: Interaction) -> bytes:
    return json.dumps(event.to_json_dict(), separators=(",", ":")).encode()
