"""The item-record contract (``models.catalog``): what the validator accepts, what it refuses
with which reason, and the wire form of records and tombstones."""

from __future__ import annotations

import json

import pytest

from models.catalog import (
    InvalidItem,
    ItemRecord,
    decode_item,
    encode_item,
    encode_item_message,
    parse_item_message,
    validate_item,
)
from models.events import MAX_ID_LENGTH


def test_a_full_record_round_trips_through_the_wire_form():
    record = validate_item(
        {
            "item_id": 50,
            "title": "Star Wars (1977)",
            "categories": ["Action", "Sci-Fi", "Action"],
            "attributes": {"year": 1977, "rating": 8.6, "color": True, "studio": "Fox"},
            "hidden": True,
        }
    )
    assert record == ItemRecord(
        "50",
        "Star Wars (1977)",
        ("Action", "Sci-Fi"),  # duplicates dropped, order kept
        {"year": 1977, "rating": 8.6, "color": True, "studio": "Fox"},
        hidden=True,
    )
    assert decode_item(encode_item(record)) == record
    assert json.loads(encode_item(record))["categories"] == ["Action", "Sci-Fi"]


def test_optional_fields_default_to_no_categories_no_attributes_shown():
    assert validate_item({"item_id": " i1 ", "title": "One"}) == ItemRecord("i1", "One")
    assert validate_item({"item_id": "i1", "title": "One", "categories": None}).categories == ()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ([1, 2], "must be a JSON object"),
        ({"title": "x"}, "item_id must be a non-empty string or integer"),
        ({"item_id": True, "title": "x"}, "item_id must be a non-empty"),
        ({"item_id": "  ", "title": "x"}, "item_id must be a non-empty"),
        ({"item_id": "i" * (MAX_ID_LENGTH + 1), "title": "x"}, "item_id longer than 256"),
        ({"item_id": "a"}, "title must be a non-empty string"),
        ({"item_id": "a", "title": 5}, "title must be a non-empty string"),
        ({"item_id": "a", "title": "t" * 1001}, "title longer than 1000"),
        ({"item_id": "a", "title": "x", "categories": "Drama"}, "categories must be a list"),
        ({"item_id": "a", "title": "x", "categories": ["ok", 3]}, "each category must be"),
        ({"item_id": "a", "title": "x", "categories": ["c"] * 65}, "more than 64 categories"),
        ({"item_id": "a", "title": "x", "attributes": [1]}, "attributes must be a JSON object"),
        ({"item_id": "a", "title": "x", "attributes": {"d": {"x": 1}}}, "'d' must be a string"),
        ({"item_id": "a", "title": "x", "attributes": {"d": None}}, "'d' must be a string"),
        ({"item_id": "a", "title": "x", "attributes": {"p": float("nan")}}, "finite number"),
        ({"item_id": "a", "title": "x", "attributes": {"": 1}}, "attribute name must be"),
        ({"item_id": "a", "title": "x", "hidden": "yes"}, "hidden must be true or false"),
        ({"item_id": "a", "title": "x", "hiden": True}, "unknown field 'hiden'"),
    ],
)
def test_records_that_break_the_contract_are_refused_with_the_reason(payload, reason):
    with pytest.raises(InvalidItem, match=reason.replace("(", r"\(")):
        validate_item(payload)


def test_bytes_that_are_not_json_are_an_invalid_item():
    with pytest.raises(InvalidItem, match="not valid UTF-8 JSON"):
        decode_item(b"\xff{")


def test_messages_are_keyed_by_item_id_and_a_null_value_is_a_tombstone():
    record = ItemRecord("42", "Answer", ("books",))
    key, value = encode_item_message("42", record)
    assert (key, parse_item_message(key, value)) == (b"42", ("42", record))
    assert encode_item_message("42", None) == (b"42", None)
    assert parse_item_message(b"42", None) == ("42", None)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (None, b'{"item_id": "a", "title": "A"}', "the key is missing"),
        (b"", None, "the key is missing"),
        (b"\xff", None, "key is not valid UTF-8"),
        (b"a", b"", "empty value"),
        (b"b", b'{"item_id": "a", "title": "A"}', "key 'b' is not the record's item_id 'a'"),
        (b"a", b"nope", "not valid UTF-8 JSON"),
    ],
)
def test_messages_that_cannot_be_applied_are_refused(key, value, reason):
    with pytest.raises(InvalidItem, match=reason):
        parse_item_message(key, value)
