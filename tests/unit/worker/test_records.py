"""Wire records: the Faust event record and dead letters."""

import base64
import json

from stream_app.worker.records import MAX_DLQ_PAYLOAD_BYTES, DeadLetter, dead_letter


def test_dead_letter_keeps_reason_origin_and_bytes():
    raw = b"\xff\x00not json"
    letter = dead_letter(
        raw,
        "not valid UTF-8 JSON",
        topic="events",
        partition=3,
        offset=99,
        message_timestamp_ms=1_700_000_000_000,
        now_ms=1_700_000_000_500,
    )
    assert letter.reason == "not valid UTF-8 JSON"
    assert (letter.topic, letter.partition, letter.offset) == ("events", 3, 99)
    assert letter.payload() == raw
    assert (letter.payload_size, letter.truncated) == (len(raw), False)
    assert letter.dead_at_ms == 1_700_000_000_500


def test_dead_letter_of_a_null_value_has_an_empty_payload():
    letter = dead_letter(None, "empty message value", topic="t", partition=0, offset=0, now_ms=1)
    assert letter.payload() == b""
    assert letter.payload_size == 0


def test_huge_payloads_are_cut_so_the_dead_letter_stays_sendable():
    raw = b"x" * (MAX_DLQ_PAYLOAD_BYTES * 3)
    letter = dead_letter(raw, "too big", topic="t", partition=0, offset=1, now_ms=1)
    assert letter.truncated
    assert letter.payload_size == len(raw)
    assert letter.payload() == raw[:MAX_DLQ_PAYLOAD_BYTES]
    assert len(letter.dumps()) < 100 * 1024


def test_dead_letter_json_is_plain_for_non_faust_consumers():
    letter = dead_letter(b"{}", "user_id must be ...", topic="t", partition=1, offset=2, now_ms=3)
    data = json.loads(letter.dumps())
    assert "__faust" not in data
    assert base64.b64decode(data["payload_b64"]) == b"{}"
    assert DeadLetter.loads(letter.dumps()) == letter
