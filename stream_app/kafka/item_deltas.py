"""The wire format of the worker's internal item-deltas topic: one message per target
partition holding that partition's rows (:meth:`ItemDelta.to_row`, flat lists, so neither side
builds a dict per delta), keyed so that the item table stays co-partitioned with its source."""

from __future__ import annotations

import orjson

from models.online.stream.deltas import ItemDelta
from models.online.stream.partitions import key_partition


def item_partition(item: str, partitions: int) -> int:
    """The partition of the item table's changelog row for ``item``: the one Kafka's default
    partitioner gives the key (:func:`key_partition`)."""
    return key_partition(item, partitions)


def pack_deltas(deltas: dict[tuple[str, int], ItemDelta], partitions: int) -> dict[int, bytes]:
    """One message value per target partition: ``[row, ...]`` as JSON, a row per delta
    (:meth:`ItemDelta.to_row`: a flat list, so neither side builds a dict per delta).

    >>> packed = pack_deltas({("a", 0): ItemDelta(1.0, {"b": 1.0}, (0, 3))}, 4)
    >>> [(i, d.pairs, d.src) for i, d in unpack_deltas(next(iter(packed.values())))]
    [('a', {'b': 1.0}, (0, 3))]
    """
    groups: dict[int, list[list[object]]] = {}
    for (item, _), delta in deltas.items():
        part = item_partition(item, partitions)
        rows = groups.get(part)
        if rows is None:
            rows = groups[part] = []
        rows.append(delta.to_row(item))
    return {p: orjson.dumps(rows) for p, rows in groups.items()}


def unpack_deltas(raw: bytes | str) -> list[tuple[str, ItemDelta]]:
    """Inverse of :func:`pack_deltas` (a batch keeps its per-item order).

    >>> unpack_deltas(b'[["a", 1.0, {"b": 1.0}, 0, 3, {}]]')
    [('a', ItemDelta(norm=1.0, pairs={'b': 1.0}, src=(0, 3), succ={}))]
    """
    return [ItemDelta.from_row(row) for row in orjson.loads(raw)]
