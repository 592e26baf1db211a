"""Keys grouped by Redis Cluster hash slot, so no multi-key command spans two slots.

A cluster refuses a script, MGET or MULTI whose keys hash to different slots (CROSSSLOT). The
cluster backend sends one command per slot group instead, all in one pipeline. Pure: the slot
is the CRC16 rule, hash tags included, that redis-py and the server share.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from redis.crc import key_slot

V = TypeVar("V")


def slot_of(key: str) -> int:
    """The hash slot (0-16383) of ``key``; only the part in ``{...}`` counts when it has one.

    >>> slot_of("{streamrec:v1}:trending") == slot_of("{streamrec:v1}:stats:events")
    True
    >>> slot_of("foo")
    12182
    """
    return int(key_slot(key.encode()))


def split_by_slot(values: Mapping[str, V]) -> list[dict[str, V]]:
    """``values`` (key -> value) cut into one mapping per slot, in the order of the slots'
    first keys; one slot's mapping is ``values`` itself, unchanged.

    >>> split_by_slot({"{u}:1": 1, "v": 2, "{u}:2": 3})
    [{'{u}:1': 1, '{u}:2': 3}, {'v': 2}]
    >>> split_by_slot({})
    []
    """
    groups: dict[int, dict[str, V]] = {}
    for key, value in values.items():
        groups.setdefault(slot_of(key), {})[key] = value
    return list(groups.values())
