"""The control message contract: what ``parse_control`` accepts, and what it refuses with which
reason (every refusal becomes a dead letter, never a crash)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stream_app.kafka.control import ForgetUser, InvalidControl, encode_forget, parse_control


def test_a_forget_round_trips_with_and_without_its_events_offset() -> None:
    for command in (ForgetUser("196", 12), ForgetUser("u:7", None)):
        assert parse_control(command.user_id.encode(), encode_forget(command)) == command
    # the brief form, without the fence
    raw = b'{"v": 1, "op": "forget_user", "user_id": 196}'
    assert parse_control(b"196", raw) == ForgetUser("196", None)


def _message(**fields: Any) -> bytes:
    return json.dumps({"v": 1, "op": "forget_user", "user_id": "u1", **fields}).encode()


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"u1", b"\xff{", "not valid UTF-8 JSON"),
        (b"u1", None, "not valid UTF-8 JSON"),
        (b"u1", b"[1]", "must be a JSON object"),
        (b"u1", _message(v=2), "unsupported version 2"),
        (b"u1", _message(v="1"), "v must be the integer format version"),
        (b"u1", _message(v=True), "v must be the integer format version"),
        (b"u1", _message(op="drop_table"), "unknown op 'drop_table'"),
        (b"u1", _message(user="u1"), "unknown fields \\['user'\\]"),
        (b"", _message(user_id=""), "user_id must be a non-empty string"),
        (b"x", _message(user_id="x" * 257), "longer than 256"),
        (b"u2", _message(), "key must be the user_id"),
        (None, _message(), "key must be the user_id"),
        (b"u1", _message(events_offset="5"), "events_offset must be an integer"),
        (b"u1", _message(events_offset=-1), "events_offset must be >= 0"),
    ],
)
def test_malformed_commands_are_refused_with_a_reason(
    key: bytes | None, value: bytes | None, reason: str
) -> None:
    with pytest.raises(InvalidControl, match=reason):
        parse_control(key, value)
