"""The item-record contract of the compacted ``items`` topic, as plain Python.

One record per item, keyed by its id; the newest record of a key is the item's metadata, and a
tombstone (a null value) deletes the item. Kept free of Kafka, like :mod:`models.events`: the
producer, the worker and the read API all check records with :func:`validate_item`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from models.events import MAX_ID_LENGTH

#: Longest title accepted (a title is shown, not searched: longer is a producer bug).
MAX_TITLE_LENGTH = 1000
#: Most categories, and most attributes, one record may carry.
MAX_CATEGORIES = 64
MAX_ATTRIBUTES = 64
#: Longest string attribute value.
MAX_ATTRIBUTE_LENGTH = 1000

ITEM_FIELDS: tuple[str, ...] = ("item_id", "title", "categories", "attributes", "hidden")

AttributeValue = str | int | float | bool


class InvalidItem(ValueError):
    """An item record breaks the contract; ``str(exc)`` is the dead letter's reason."""


@dataclass(frozen=True, slots=True)
class ItemRecord:
    """One item's metadata, validated: what an app shows and what filters and content read.

    >>> r = ItemRecord("50", "Star Wars (1977)", ("Action", "Sci-Fi"), {"year": 1977})
    >>> decode_item(encode_item(r)) == r
    True
    """

    item_id: str
    title: str
    categories: tuple[str, ...] = ()
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    hidden: bool = False

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "title": self.title,
            "categories": list(self.categories),
            "attributes": dict(self.attributes),
            "hidden": self.hidden,
        }


def _text(raw: Any, name: str, max_length: int) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidItem(f"{name} must be a non-empty string")
    if len(raw) > max_length:
        raise InvalidItem(f"{name} longer than {max_length} characters")
    return raw


def _item_id(raw: Any) -> str:
    # As in the event contract: a string or an integer, stored as a string.
    if isinstance(raw, bool) or not isinstance(raw, str | int) or not str(raw).strip():
        raise InvalidItem("item_id must be a non-empty string or integer")
    text = str(raw).strip()
    if len(text) > MAX_ID_LENGTH:
        raise InvalidItem(f"item_id longer than {MAX_ID_LENGTH} characters")
    return text


def _categories(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidItem("categories must be a list of strings")
    if len(raw) > MAX_CATEGORIES:
        raise InvalidItem(f"more than {MAX_CATEGORIES} categories")
    # Order kept, duplicates dropped: a category is a label, not a weight.
    return tuple(dict.fromkeys(_text(c, "each category", MAX_ID_LENGTH) for c in raw))


def _attributes(raw: Any) -> dict[str, AttributeValue]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidItem("attributes must be a JSON object")
    if len(raw) > MAX_ATTRIBUTES:
        raise InvalidItem(f"more than {MAX_ATTRIBUTES} attributes")
    out: dict[str, AttributeValue] = {}
    for name, value in raw.items():
        _text(name, "an attribute name", MAX_ID_LENGTH)
        if isinstance(value, str):
            if len(value) > MAX_ATTRIBUTE_LENGTH:
                raise InvalidItem(
                    f"attribute {name!r} longer than {MAX_ATTRIBUTE_LENGTH} characters"
                )
        elif isinstance(value, float) and not math.isfinite(value):
            raise InvalidItem(f"attribute {name!r} must be a finite number")
        elif not isinstance(value, bool | int | float):
            raise InvalidItem(f"attribute {name!r} must be a string, number or boolean (flat)")
        out[name] = value
    return out


def validate_item(payload: Any) -> ItemRecord:
    """Check a decoded JSON object against the item contract and return the typed record.

    Unknown fields are refused: a misspelt ``"hiden": true`` would otherwise publish an item
    the producer meant to hide.

    >>> validate_item({"item_id": 50, "title": "Star Wars (1977)", "categories": ["Sci-Fi"]})
    ItemRecord(item_id='50', title='Star Wars (1977)', categories=('Sci-Fi',), attributes={}, \
hidden=False)
    >>> validate_item({"item_id": "a", "title": "A", "hiden": True})
    Traceback (most recent call last):
    ...
    models.catalog.InvalidItem: unknown field 'hiden' (known: item_id, title, ...)
    """
    if not isinstance(payload, Mapping):
        raise InvalidItem("item record must be a JSON object")
    for name in payload:
        if name not in ITEM_FIELDS:
            raise InvalidItem(f"unknown field {name!r} (known: {', '.join(ITEM_FIELDS)})")
    hidden = payload.get("hidden", False)
    if not isinstance(hidden, bool):
        raise InvalidItem("hidden must be true or false")
    return ItemRecord(
        item_id=_item_id(payload.get("item_id")),
        title=_text(payload.get("title"), "title", MAX_TITLE_LENGTH),
        categories=_categories(payload.get("categories")),
        attributes=_attributes(payload.get("attributes")),
        hidden=hidden,
    )


def decode_item(raw: bytes | str) -> ItemRecord:
    """Bytes off the wire (or out of Redis) to a validated record; any failure is an
    ``InvalidItem`` with a reason."""
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidItem(f"not valid UTF-8 JSON: {exc}") from None
    return validate_item(payload)


def encode_item(record: ItemRecord) -> bytes:
    """The record's value on the wire and in Redis (compact JSON)."""
    return orjson.dumps(record.to_json_dict())


def parse_item_message(key: bytes | None, value: bytes | None) -> tuple[str, ItemRecord | None]:
    """``(item_id, record)`` of one message of the items topic; ``record`` is None for a
    tombstone (a null value), which deletes the item.

    The key must be the record's item id: compaction keeps the newest record *per key*, so a
    record under another key would outlive a later tombstone of its item.

    >>> parse_item_message(b"7", None)
    ('7', None)
    >>> parse_item_message(b"7", b'{"item_id": "8", "title": "x"}')
    Traceback (most recent call last):
    ...
    models.catalog.InvalidItem: key '7' is not the record's item_id '8'
    """
    if not key:
        raise InvalidItem("item records are keyed by item_id; the key is missing")
    try:
        item_id = _item_id(key.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidItem("the key is not valid UTF-8") from None
    if value is None:
        return item_id, None
    if not value:
        raise InvalidItem("empty value (a tombstone is a null value, not an empty one)")
    record = decode_item(value)
    if record.item_id != item_id:
        raise InvalidItem(f"key {item_id!r} is not the record's item_id {record.item_id!r}")
    return item_id, record


def encode_item_message(item_id: str, record: ItemRecord | None) -> tuple[bytes, bytes | None]:
    """``(key, value)`` on the items topic; ``record=None`` is the item's tombstone.

    >>> encode_item_message("7", None)
    (b'7', None)
    """
    return item_id.encode(), None if record is None else encode_item(record)
