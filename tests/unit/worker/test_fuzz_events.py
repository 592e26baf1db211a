"""Property-based fuzzing of the worker's one entry for bytes off the wire, ``parse_message``:
whatever arrives, it either returns an event that honours every rule of the contract or raises
``InvalidEvent`` with a reason (what the dead letter says); nothing else escapes, so no input
can stop the live path. Hypothesis generates the inputs (random bytes, truncated UTF-8, deep
nesting, huge values, NaN/Infinity, wrong types in every field, duplicate keys, NUL bytes)."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from models.events import (
    EVENT_TYPES,
    MAX_ID_LENGTH,
    MIN_TIMESTAMP_MS,
    Interaction,
    InvalidEvent,
)
from stream_app.worker.live_path import parse_message

FIELDS = ("user_id", "item_id", "event_type", "timestamp", "value", "session_id", "context")
GOOD = {"user_id": "u1", "item_id": "i1", "event_type": "rating", "timestamp": 1_700_000_000_000,
        "value": 4}  # fmt: skip

#: any JSON value, nested a few levels (strings with NUL and astral characters included)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=300),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
#: derandomized: CI runs the same 400 examples each time (4,000 random ones passed once too)
FUZZ = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def _non_finite(value: Any) -> bool:
    """Whether ``json.dumps`` would write NaN or Infinity somewhere in ``value``."""
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return True
    return False


def _holds_the_contract(event: Interaction) -> None:
    for name in ("user_id", "item_id"):
        ident = getattr(event, name)
        assert isinstance(ident, str) and ident == ident.strip() and 0 < len(ident) <= MAX_ID_LENGTH
    assert event.event_type in EVENT_TYPES
    assert isinstance(event.timestamp_ms, int) and event.timestamp_ms >= MIN_TIMESTAMP_MS
    assert event.value is None or (isinstance(event.value, float) and math.isfinite(event.value))
    assert event.event_type != "rating" or event.value is not None
    assert event.session_id is None or isinstance(event.session_id, str)


def _judge(raw: Any) -> Interaction | None:
    """The property itself: a valid event or an ``InvalidEvent`` with a reason, nothing else."""
    try:
        event = parse_message(raw)
    except InvalidEvent as exc:
        assert str(exc), "a dead letter needs a reason"
        return None
    _holds_the_contract(event)
    return event


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(raw: bytes) -> None:
    _judge(raw)


@FUZZ
@given(st.integers(min_value=1, max_value=60), st.sampled_from(["é", "€", "𝄞", "ü"]))
def test_utf8_cut_inside_a_character(cut: int, char: str) -> None:
    raw = json.dumps({**GOOD, "item_id": char * 40}, ensure_ascii=False).encode()
    _judge(raw[: len(raw) - cut])


@FUZZ
@given(st.sampled_from(FIELDS), json_values)
def test_any_value_in_any_field(field: str, value: Any) -> None:
    event = _judge(json.dumps({**GOOD, field: value}).encode())
    if event is not None and field in ("user_id", "item_id"):
        assert getattr(event, field) == str(value).strip()  # ids are kept, never rewritten


@FUZZ
@given(st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), json_values, max_size=9))
def test_any_object(payload: dict) -> None:
    _judge(json.dumps(payload).encode())


@FUZZ
@given(st.sampled_from(FIELDS), json_values, json_values)
def test_duplicate_keys_are_judged_by_the_last_one(field: str, first: Any, last: Any) -> None:
    # NaN/Infinity are no JSON: a message holding one is invalid whatever comes after it
    assume(not _non_finite(first))
    key = json.dumps(field)
    raw = f"{json.dumps(GOOD)[:-1]}, {key}: {json.dumps(first)}, {key}: {json.dumps(last)}}}"
    assert (_judge(raw.encode()) is None) == (
        _judge(json.dumps({**GOOD, field: last}).encode()) is None
    )


def test_deep_nesting_huge_values_and_nul_bytes() -> None:
    deep = b'{"user_id": "u", "context": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert _judge(deep) is None
    assert _judge(json.dumps({**GOOD, "item_id": "x" * 1_000_000}).encode()) is None  # 1 MB id
    assert _judge(json.dumps({**GOOD, "context": {"blob": "y" * 1_000_000}}).encode()) is not None
    for special in (b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1", b"1e400"):
        raw = b'{"user_id": "u", "item_id": "i", "event_type": "view", "timestamp": ' + special
        assert _judge(raw + b"}") is None, special
    event = _judge(json.dumps({**GOOD, "user_id": "a\x00b"}).encode())
    assert event is not None and event.user_id == "a\x00b"  # NUL is a character like any other
