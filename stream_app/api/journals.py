"""The two short journals the workers keep in Redis for the dashboard: the newest dead letters
and the session-model slot's decisions (swaps and refusals, with the gate's reason).

Both are capped lists of JSON objects, newest first (``CacheKeys.dead_letters`` and
``CacheKeys.model_decisions``). A damaged entry is skipped, never fatal: a page that shows the
other nineteen beats a 500.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

log = logging.getLogger(__name__)

Entry = TypeVar("Entry")

#: The most of a dead letter's payload preview the API passes on (the page shows less).
MAX_PREVIEW_CHARS = 500


@dataclass(frozen=True, slots=True)
class DeadLetterEntry:
    """One rejected event: why, where it came from, when, and the start of its bytes."""

    reason: str
    topic: str
    partition: int
    offset: int
    dead_at_ms: int
    payload_size: int
    preview: str

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ModelDecision:
    """One decision of the model slot: ``accepted`` a new version or refused it for ``reason``;
    ``trigger`` is what asked (``start``, ``poll`` or ``update``)."""

    at_ms: int
    version: str
    accepted: bool
    reason: str
    trigger: str

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


def _int(data: Mapping[str, Any], name: str) -> int:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} is not a number: {value!r}")
    return int(value)


def _str(data: Mapping[str, Any], name: str) -> str:
    value = data[name]
    if not isinstance(value, str):
        raise TypeError(f"{name} is not a string: {value!r}")
    return value


def _bool(data: Mapping[str, Any], name: str) -> bool:
    value = data[name]
    if not isinstance(value, bool):
        raise TypeError(f"{name} is not a boolean: {value!r}")
    return value


def _entries(
    raws: Iterable[Any], what: str, build: Callable[[Mapping[str, Any]], Entry]
) -> list[Entry]:
    """``build`` over each JSON object of ``raws`` in order; what is not JSON, not an object or
    lacks a field of the right type is skipped."""
    out: list[Entry] = []
    for raw in raws:
        try:
            data = json.loads(raw)
        except (ValueError, TypeError):
            log.debug("skipped a %s that is not JSON", what)
            continue
        if not isinstance(data, Mapping):
            continue
        try:
            out.append(build(data))
        except (KeyError, TypeError) as exc:
            log.debug("skipped a damaged %s: %r", what, exc)
    return out


def parse_dead_letters(raws: Iterable[Any]) -> list[DeadLetterEntry]:
    """Entries of the dead-letter journal (an ``LRANGE`` reply), in its order.

    >>> parse_dead_letters([b'{"reason": "bad json", "topic": "events", "partition": 0,'
    ...                     b' "offset": 7, "dead_at_ms": 5, "payload_size": 3, "preview": "{x"}',
    ...                     b"{broken", b'{"reason": 1}'])
    [DeadLetterEntry(reason='bad json', topic='events', partition=0, offset=7, dead_at_ms=5,
                     payload_size=3, preview='{x')]
    """
    return _entries(
        raws,
        "dead letter",
        lambda data: DeadLetterEntry(
            reason=_str(data, "reason"),
            topic=_str(data, "topic"),
            partition=_int(data, "partition"),
            offset=_int(data, "offset"),
            dead_at_ms=_int(data, "dead_at_ms"),
            payload_size=_int(data, "payload_size"),
            preview=_str(data, "preview")[:MAX_PREVIEW_CHARS],
        ),
    )


def parse_model_decisions(raws: Iterable[Any]) -> list[ModelDecision]:
    """Entries of the model-decision journal (an ``LRANGE`` reply), in its order.

    >>> [d] = parse_model_decisions([b'{"at_ms": 9, "version": "v2", "accepted": false,'
    ...                              b' "reason": "worse than serving", "trigger": "poll"}', b"[]"])
    >>> d.version, d.accepted, d.reason, d.trigger
    ('v2', False, 'worse than serving', 'poll')
    """
    return _entries(
        raws,
        "model decision",
        lambda data: ModelDecision(
            at_ms=_int(data, "at_ms"),
            version=_str(data, "version"),
            accepted=_bool(data, "accepted"),
            reason=_str(data, "reason"),
            trigger=_str(data, "trigger"),
        ),
    )
