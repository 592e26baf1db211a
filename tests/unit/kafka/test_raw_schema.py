"""``RawSchema`` gives the events Faust's own raw-bytes schema gives, without its codecs."""

from __future__ import annotations

import asyncio

import faust
import pytest
from faust.types import Message

from stream_app.kafka.raw_schema import RawSchema


def _message(key: bytes | None, value: bytes | None) -> Message:
    return Message("events", 2, 41, 1_700_000_000.0, 0, [("h", b"1")], key, value, None)


@pytest.mark.parametrize(
    ("key", "value"),
    [(b"u1", b'{"user_id": "u1"}'), (None, b"not json at all \xff"), (b"u2", None)],
)
def test_raw_schema_decodes_as_faust_raw_bytes_schema(key, value):
    app = faust.App("raw-schema-test")
    faust_raw = faust.Schema(
        key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    ours = asyncio.run(RawSchema().compile(app)(_message(key, value)))
    theirs = asyncio.run(faust_raw.compile(app)(_message(key, value)))
    assert (ours.key, ours.value) == (theirs.key, theirs.value) == (key, value)
    assert ours.message.offset == 41 and ours.headers == theirs.headers


def test_a_topic_with_raw_schema_decodes_without_faust_codecs(monkeypatch):
    app = faust.App("raw-schema-topic-test")

    def no_codecs(*args, **kwargs):
        raise AssertionError("a codec ran")

    monkeypatch.setattr(app.serializers, "loads_key", no_codecs)
    monkeypatch.setattr(app.serializers, "loads_value", no_codecs)
    topic = app.topic("events", schema=RawSchema())
    event = asyncio.run(topic.decode(_message(b"k", b"v")))
    assert (event.key, event.value) == (b"k", b"v")
    plain = app.topic("plain", key_type=bytes, value_type=bytes, value_serializer="raw")
    with pytest.raises(AssertionError, match="a codec ran"):
        asyncio.run(plain.decode(_message(b"k", b"v")))
