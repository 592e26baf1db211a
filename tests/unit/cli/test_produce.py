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


def _item_args(**given):
    """The namespace ``streamrec produce`` parses, with the given options set."""
    import argparse

    from stream_app.cli.produce import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([])
    for name, value in given.items():
        setattr(args, name, value)
    return args


def test_items_are_keyed_by_item_id_with_hidden_records_and_tombstones_last():
    from models.catalog import ItemRecord, parse_item_message
    from stream_app.cli.produce import load_item_messages

    args = _item_args(items=True, generate=2000, limit=3, hide=["i1"], delete=["i0", "zz"])
    messages = load_item_messages(args)
    parsed = [parse_item_message(key, value) for key, value in messages]
    assert [item_id for item_id, _ in parsed] == ["i0", "i1", "i2", "i0", "zz"]
    records = [record for _, record in parsed]
    assert [r.hidden for r in records[:3]] == [False, True, False]
    assert all(isinstance(r, ItemRecord) and r.categories for r in records[:3])
    assert records[3:] == [None, None]  # tombstones: null values, after the records
    only_deletes = load_item_messages(_item_args(items=True, delete=["x"]))
    assert only_deletes == [(b"x", None)]


def test_option_combinations_that_cannot_run_are_refused():
    from stream_app.cli.produce import _usage_error

    assert _usage_error(_item_args(generate=10)) is None
    assert _usage_error(_item_args(items=True, dataset="synthetic", hide=["a"])) is None
    assert _usage_error(_item_args(items=True, delete=["a"])) is None
    assert "required" in _usage_error(_item_args())
    assert "need --items" in _usage_error(_item_args(generate=10, delete=["a"]))
    assert "not --items" in _usage_error(_item_args(items=True, generate=10, invalid=3))
    assert "needs --dataset" in _usage_error(_item_args(items=True))
    assert "needs --dataset" in _usage_error(_item_args(items=True, hide=["a"]))
