"""Item interning: string ids on the wire, dense ints inside, so statistics can live in numpy."""

from __future__ import annotations


class Vocabulary:
    """Grows-only mapping between item ids and dense indices ``0..n-1``.

    Several statistics of one recommender share a vocabulary so their score vectors line up.

    Examples
    --------
    >>> v = Vocabulary()
    >>> v.add("a"), v.add("b"), v.add("a"), v.get("z"), v.items
    (0, 1, 0, None, ['a', 'b'])
    """

    __slots__ = ("_index", "items")

    def __init__(self, items: list[str] | None = None) -> None:
        self.items: list[str] = list(items or [])
        self._index: dict[str, int] = {item: n for n, item in enumerate(self.items)}

    def add(self, item_id: str) -> int:
        index = self._index.get(item_id)
        if index is None:
            index = len(self.items)
            self._index[item_id] = index
            self.items.append(item_id)
        return index

    def get(self, item_id: str) -> int | None:
        return self._index.get(item_id)

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index


def grown(array, size: int, fill: float = 0.0):  # type: ignore[no-untyped-def]
    """``array`` grown along axis 0 to at least ``size`` rows (doubling), new rows ``fill``."""
    import numpy as np

    if array.shape[0] >= size:
        return array
    capacity = max(size, 2 * array.shape[0], 16)
    out = np.full((capacity, *array.shape[1:]), fill, dtype=array.dtype)
    out[: array.shape[0]] = array
    return out
