"""The pure halves of the Kafka adapters: model-update messages and event decoding."""

from __future__ import annotations

import pytest

from stream_app.kafka.event_log import decode_values
from stream_app.kafka.model_updates import InvalidUpdate, ModelUpdate, encode_update, parse_update


def test_model_update_round_trip() -> None:
    update = ModelUpdate("20261123T050000Z-0a1b2c3d", "/store/v", {"mrr@20": 0.25, "recall@20": 1})
    parsed = parse_update(encode_update(update))
    assert parsed == ModelUpdate(
        "20261123T050000Z-0a1b2c3d", "/store/v", {"mrr@20": 0.25, "recall@20": 1.0}
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff", "UTF-8 JSON"),
        (b"[]", "JSON object"),
        (b'{"path": "/p"}', "version"),
        (b'{"version": "v", "path": ""}', "path"),
        (b'{"version": "v", "path": "/p", "metrics": {"m": "high"}}', "finite numbers"),
        (b'{"version": "v", "path": "/p", "metrics": {"m": true}}', "finite numbers"),
    ],
)
def test_bad_model_updates_are_named(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidUpdate, match=reason):
        parse_update(raw)


def test_decode_values_sorts_and_counts_invalid() -> None:
    late = b'{"user_id":"u","item_id":"b","event_type":"view","timestamp":1700000000500}'
    early = b'{"user_id":"u","item_id":"a","event_type":"view","timestamp":1700000000000}'
    bad = b'{"user_id":"u","item_id":"a","event_type":"like","timestamp":1700000000000}'
    events, invalid = decode_values([late, bad, early, None])
    assert [e.item_id for e in events] == ["a", "b"]
    assert invalid == 2
