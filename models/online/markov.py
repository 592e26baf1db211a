"""First-order transitions "after item a, users went to item b", bounded per item."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from models.online.decay import advance_epoch, forward_weight
from models.online.rows import CappedRows
from models.online.vocab import grown


class Transitions:
    """Decayed transition counts ``a -> b`` with at most ``max_successors`` per item.

    ``probabilities(a)`` is the share of ``a``'s outgoing (lower-bound) weight going to each ``b``.

    Examples
    --------
    >>> t = Transitions(max_successors=4)
    >>> t.learn_one(0, 1, 1.0, 0); t.learn_one(0, 1, 1.0, 0); t.learn_one(0, 2, 2.0, 0)
    >>> t.probabilities(0, 3).tolist()
    [0.0, 0.5, 0.5]
    """

    def __init__(self, max_successors: int = 50, half_life_s: float = math.inf) -> None:
        self.max_successors = max_successors
        self.half_life_s = half_life_s
        self.rows = CappedRows(max_successors)
        self._total = np.zeros(0)
        self._epoch_ms: float | None = None
        self._top: dict[int, int | None] = {}  # top successor per item, dropped when it learns

    def learn_one(self, prev: int, item: int, weight: float, timestamp_ms: float) -> None:
        if math.isinf(self.half_life_s):
            fw = weight
        else:
            self._epoch_ms, factor = advance_epoch(self._epoch_ms, timestamp_ms, self.half_life_s)
            if factor is not None:
                self.rows.scale(factor)
                self._total *= factor
            fw = forward_weight(weight, timestamp_ms, self._epoch_ms, self.half_life_s)
        if prev >= self._total.shape[0]:
            self._total = grown(self._total, prev + 1)
        self._total[prev] += fw
        self.rows.add(prev, item, fw)
        self._top.pop(prev, None)

    def probabilities(self, prev: int, n: int) -> np.ndarray:
        return self.mixture([prev], [1.0], n)

    def mixture(self, prevs: Sequence[int], scales: Sequence[float], n: int) -> np.ndarray:
        """``sum(scale * probabilities(prev))`` over the pairs, in one pass.

        >>> t = Transitions(); t.learn_one(0, 1, 1.0, 0); t.learn_one(2, 0, 1.0, 0)
        >>> t.mixture([0, 2], [1.0, 0.5], 3).tolist()
        [0.5, 1.0, 0.0]
        """
        indices, values = [], []
        for prev, scale in zip(prevs, scales, strict=True):
            if prev >= self._total.shape[0] or self._total[prev] <= 0:
                continue
            idx, weights = self.rows.row(prev)
            indices.append(idx)
            values.append(weights * (scale / self._total[prev]))
        if not indices:
            return np.zeros(n)
        idx, weights = np.concatenate(indices), np.concatenate(values)
        keep = idx < n
        return np.bincount(idx[keep], weights[keep], minlength=n)[:n].astype(np.float64)

    def top_successor(self, prev: int) -> int | None:
        """The most frequent successor of ``prev`` (lower-bound weight), or None."""
        if prev in self._top:
            return self._top[prev]
        top = None
        if prev < self._total.shape[0] and self._total[prev] > 0:
            idx, weights = self.rows.row(prev)
            top = int(idx[int(np.argmax(weights))]) if idx.shape[0] else None
        self._top[prev] = top
        return top

    def path_position(self, items: Sequence[int]) -> int:
        """Where a sequence stands on its learned path, skipping detours.

        The first item is the position; an item that is the position's most frequent successor
        moves it there, any other item is a detour that leaves it. Why: a session that detours
        (a popular item, a mis-click) often resumes where it was, and then the transition that
        predicts its next item starts from the position, not from the detour.

        >>> t = Transitions()
        >>> for a, b in [(0, 1), (1, 2), (0, 1), (1, 2)]:
        ...     t.learn_one(a, b, 1.0, 0)
        >>> t.path_position([0, 1, 7]), t.path_position([0, 1, 2]), t.path_position([5, 0])
        (1, 2, 5)
        """
        position = items[0]
        for item in items[1:]:
            if item == self.top_successor(position):
                position = item
        return position

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        arrays = {f"rows_{k}": v for k, v in self.rows.state().items()}
        arrays["total"] = self._total.copy()
        return {"epoch_ms": self._epoch_ms}, arrays

    def load_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        self._epoch_ms = meta["epoch_ms"]
        self.rows.load_state({k[5:]: v for k, v in arrays.items() if k.startswith("rows_")})
        self._total = np.array(arrays["total"], dtype=np.float64)
        self._top.clear()
