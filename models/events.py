"""The event contract as plain Python: what every model, evaluator and producer agrees an event is.

Kept free of Faust and Kafka so learning code and evaluation run without any infrastructure; the
worker validates the bytes it reads with :func:`validate_event`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

#: Event types that say "not for me": they never count as a positive (docs/online-models.md,
#: "Negative feedback"). ``dislike``: the user rejected the item; ``skip``: she was shown it and
#: passed. Both exclude the item from her recommendations.
NEGATIVE_EVENT_TYPES: tuple[str, ...] = ("dislike", "skip")
EVENT_TYPES: tuple[str, ...] = (
    "view",
    "click",
    "add_to_cart",
    "purchase",
    "rating",
    *NEGATIVE_EVENT_TYPES,
)

#: Implicit-feedback strength of each positive event type (view < click < add_to_cart <
#: purchase); ``rating`` is the weight of a top (5-star) rating, a rating ``r`` weighing ``r / 5``
#: of it (see :func:`event_weight`). The defaults of ``STREAMREC_EVENT_WEIGHTS``.
EVENT_TYPE_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 2.0,
    "add_to_cart": 3.0,
    "purchase": 5.0,
    "rating": 5.0,
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


class EventWeights(tuple[tuple[str, float], ...]):
    """``(type, weight)`` pairs whose text is the setting's own ``type=weight,...``, so settings
    written back to the environment (a worker started by a test) read the same.

    >>> str(EventWeights([("view", 1.0), ("purchase", 2.5)]))
    'view=1.0,purchase=2.5'
    """

    __slots__ = ()

    def __str__(self) -> str:
        return ",".join(f"{name}={weight!r}" for name, weight in self)


#: the defaults as pairs, in the table's order
DEFAULT_WEIGHTS = EventWeights(EVENT_TYPE_WEIGHTS.items())


def parse_weights(text: str) -> EventWeights:
    """``type=weight,...`` over the defaults (:data:`EVENT_TYPE_WEIGHTS`), in their order;
    ValueError naming what is wrong: a worker and an evaluator must read the same weights.

    >>> dict(parse_weights("purchase=10, view=0.5"))["purchase"]
    10.0
    >>> parse_weights("dislike=1")
    Traceback (most recent call last):
    ...
    ValueError: 'dislike' is negative feedback: it has no weight
    """
    weights = dict(EVENT_TYPE_WEIGHTS)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, raw = (s.strip() for s in part.partition("="))
        if name in NEGATIVE_EVENT_TYPES:
            raise ValueError(f"{name!r} is negative feedback: it has no weight")
        if not sep or name not in weights:
            raise ValueError(f"{part!r} is not type=weight with a type of {', '.join(weights)}")
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not 0 < value < math.inf:
            raise ValueError(f"the weight of {name!r} must be a positive number")
        weights[name] = value
    return EventWeights(weights.items())


@dataclass(frozen=True, slots=True)
class Feedback:
    """How the models read an event: positive with a weight, or negative (it teaches nothing
    and excludes its item for its user). One object, built from the settings at the entry
    point, so that the worker and the evaluator read events alike.

    ``negative_rating_below``: ratings strictly below it are negative (None: none is).

    >>> rules = Feedback(negative_rating_below=3.0)
    >>> rules.is_negative(Interaction("u", "i", "rating", 1, 2.0)), rules.weight(
    ...     Interaction("u", "i", "rating", 1, 4.0))
    (True, 4.0)
    """

    weights: tuple[tuple[str, float], ...] = DEFAULT_WEIGHTS
    negative_rating_below: float | None = None
    #: type -> weight, negative types at 0 (filled from ``weights``)
    _table: dict[str, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        table = {**dict.fromkeys(NEGATIVE_EVENT_TYPES, 0.0), **EVENT_TYPE_WEIGHTS}
        table.update(self.weights)  # a type not named keeps its default
        object.__setattr__(self, "_table", table)

    def is_negative(self, event: Interaction) -> bool:
        kind = event.event_type
        if kind == "rating":
            below = self.negative_rating_below
            return below is not None and event.value is not None and event.value < below
        return kind in NEGATIVE_EVENT_TYPES

    def weight(self, event: Interaction) -> float:
        """How strongly a positive event says "the user likes this item" (0 for a negative).

        Ratings on a 1-5 scale map to 0.2..1.0 of the ``rating`` weight (by default a
        purchase's), so a 5-star rating counts as much as a purchase and a 1-star one less
        than a view.
        """
        if event.event_type == "rating":
            rating = 3.0 if event.value is None else event.value
            return max(rating, 0.0) / 5.0 * self._table["rating"]
        return self._table[event.event_type]


#: The defaults: today's weights, no rating negative.
DEFAULT_FEEDBACK = Feedback()


def event_weight(event: Interaction, feedback: Feedback = DEFAULT_FEEDBACK) -> float:
    """How strongly an event says "the user likes this item" (:meth:`Feedback.weight`)."""
    return feedback.weight(event)


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
