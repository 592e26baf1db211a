"""Bounded sparse rows: per item, at most ``capacity`` (neighbour, weight) slots, kept as
Space-Saving counters so memory is fixed by configuration, not by the length of the stream.

Why Space-Saving (Metwally et al., 2005) rather than "drop the weakest, start the newcomer at
zero": with a plain drop, a full row of a popular item replaces its bottom slot on every new pair,
and a genuinely strong pair can never accumulate. Space-Saving gives the newcomer the evicted
count as an over-estimate and remembers that over-estimate as ``err``; any pair whose true weight
exceeds ``row_total / capacity`` is guaranteed to stay, and ``count - err`` is a lower bound that
the similarity uses, so an evicted-and-readmitted pair is never over-rated.
"""

from __future__ import annotations

import numpy as np

from models.online.vocab import grown


class CappedRows:
    """A (rows x capacity) table of weighted neighbour slots with Space-Saving eviction.

    Examples
    --------
    >>> rows = CappedRows(capacity=2)
    >>> for b, w in ((1, 5.0), (2, 1.0), (3, 2.0)):   # 3 evicts 2 (the weakest) and inherits 1.0
    ...     rows.add(0, b, w)
    >>> rows.get(0, 1), rows.get(0, 2), rows.get(0, 3), rows.upper(0, 3)
    (5.0, 0.0, 2.0, 3.0)
    >>> rows.n_entries, rows.evictions
    (2, 1)
    """

    def __init__(self, capacity: int = 100) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self.idx = np.full((0, capacity), -1, dtype=np.int32)
        self.cnt = np.zeros((0, capacity), dtype=np.float64)
        self.err = np.zeros((0, capacity), dtype=np.float64)
        self.slots: list[dict[int, int]] = []
        self.evictions = 0

    def ensure(self, n_rows: int) -> None:
        if n_rows > self.idx.shape[0]:
            self.idx = grown(self.idx, n_rows, fill=-1)
            self.cnt = grown(self.cnt, n_rows)
            self.err = grown(self.err, n_rows)
        while len(self.slots) < n_rows:
            self.slots.append({})

    def add(self, a: int, b: int, weight: float) -> None:
        if a >= len(self.slots):
            self.ensure(a + 1)
        row = self.slots[a]
        slot = row.get(b)
        if slot is None:
            slot = len(row)
            if slot >= self.capacity:
                counts = self.cnt[a]
                slot = int(counts.argmin())
                del row[int(self.idx[a, slot])]
                self.err[a, slot] = counts[slot]
                self.evictions += 1
            row[b] = slot
            self.idx[a, slot] = b
        self.cnt[a, slot] += weight

    def get(self, a: int, b: int) -> float:
        """Guaranteed (lower-bound) weight of ``a -> b``; 0 when not held."""
        if a >= len(self.slots):
            return 0.0
        slot = self.slots[a].get(b)
        return 0.0 if slot is None else float(self.cnt[a, slot] - self.err[a, slot])

    def upper(self, a: int, b: int) -> float:
        """Space-Saving upper bound of ``a -> b`` (what eviction ranks by)."""
        slot = self.slots[a].get(b) if a < len(self.slots) else None
        return 0.0 if slot is None else float(self.cnt[a, slot])

    def row(self, a: int) -> tuple[np.ndarray, np.ndarray]:
        """(neighbour indices, lower-bound weights) of row ``a``."""
        if a >= len(self.slots):
            return np.empty(0, dtype=np.int32), np.empty(0)
        used = len(self.slots[a])
        return self.idx[a, :used], self.cnt[a, :used] - self.err[a, :used]

    def scale(self, factor: float) -> None:
        self.cnt *= factor
        self.err *= factor

    @property
    def n_entries(self) -> int:
        return sum(len(row) for row in self.slots)

    def lengths(self) -> np.ndarray:
        """Used slots per row (a row's slots are always the first ``length`` columns)."""
        return np.fromiter((len(row) for row in self.slots), dtype=np.int32, count=len(self.slots))

    def nbytes(self) -> int:
        """Bytes of the arrays plus an estimate of the slot dicts (~100 B per entry)."""
        arrays = self.idx.nbytes + self.cnt.nbytes + self.err.nbytes
        return arrays + 100 * self.n_entries

    def state(self) -> dict[str, np.ndarray]:
        n = len(self.slots)
        return {
            "idx": self.idx[:n].copy(),
            "cnt": self.cnt[:n].copy(),
            "err": self.err[:n].copy(),
            "length": self.lengths(),
        }

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.idx = np.array(arrays["idx"], dtype=np.int32)
        self.cnt = np.array(arrays["cnt"], dtype=np.float64)
        self.err = np.array(arrays["err"], dtype=np.float64)
        length = np.array(arrays["length"], dtype=np.int32)
        if self.idx.ndim != 2 or self.idx.shape[1] != self.capacity:
            raise ValueError("snapshot row capacity does not match this model's configuration")
        self.slots = [
            {int(b): s for s, b in enumerate(self.idx[a, : length[a]])}
            for a in range(self.idx.shape[0])
        ]
