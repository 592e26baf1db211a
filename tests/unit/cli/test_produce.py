"""The producer's wire format, retiming and malformed-message mixing (no Kafka needed)."""

import json

import pytest

from models.events import Interaction, InvalidEvent, decode_event
from stream_app.cli.produce import encode_message, interleave, malformed_messages, retime
from stream_app.worker.live_path import parse_message

T0 = 1_700_000_000_000


def test_message_is_keyed_by_user_and_carries_the_contract_json():
    event = Interaction("u9", "i3", "rating", T0, value=4.5, session_id="s1")
    key, value = encode_message(event)
    assert key == b"u9"
    assert json.loads(value) == {
        "user_id": "u9",
        "item_id": "i3",
        "event_type": "rating",
        "timestamp": T0,
        "value": 4.5,
        "session_id": "s1",
    }
    assert decode_event(value) == event


def test_retime_moves_to_now_and_scales_gaps():
    events = [Interaction("u", str(n), "view", T0 + n * 60_000) for n in range(5)]
    shifted = retime(events, start_ms=2_000_000_000_000, span_ms=4_000)
    assert [e.timestamp_ms for e in shifted] == [2_000_000_000_000 + n * 1_000 for n in range(5)]
    assert [e.item_id for e in shifted] == [e.item_id for e in events]
    same_time = retime(events[:1] * 3, 2_000_000_000_000, 10_000)
    assert {e.timestamp_ms for e in same_time} == {2_000_000_000_000}


def test_every_malformed_message_is_rejected_by_the_worker_validator():
    messages = malformed_messages(25)
    assert len(messages) == 25 and len({k for _, k, _ in messages}) == 25
    for _, _, value in messages:
        with pytest.raises(InvalidEvent):
            parse_message(value)


def test_interleave_keeps_both_orders_and_all_messages():
    good = [(b"u", str(n).encode()) for n in range(100)]
    bad = [(b"x", f"bad{n}".encode()) for n in range(10)]
    mixed = interleave(good, bad, seed=3)
    assert len(mixed) == 110
    assert [m for m in mixed if m[0] == b"u"] == good
    assert [m for m in mixed if m[0] == b"x"] == bad
    assert mixed != good + bad  # actually mixed in, not appended


def test_a_file_with_a_bad_line_is_refused_before_anything_is_sent(tmp_path, capsys):
    from stream_app.cli import main

    bad = tmp_path / "events.jsonl"
    bad.write_text('{"user_id": "u", "item_id": "i", "event_type": "view", "timestamp": 5}\n')
    assert main(["produce", "--dataset", str(bad), "--no-progress"]) == 2
    assert "cannot load events" in capsys.readouterr().err
