"""First-order transitions "after item a, users went to item b", bounded per item."""

from __future__ import annotations

import math

import numpy as np

from models.online.decay import forward_weight, needs_rescale, rescale_factor
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

    def learn_one(self, prev: int, item: int, weight: float, timestamp_ms: float) -> None:
        if math.isinf(self.half_life_s):
            fw = weight
        else:
            if self._epoch_ms is None:
                self._epoch_ms = float(timestamp_ms)
            elif needs_rescale(timestamp_ms, self._epoch_ms, self.half_life_s):
                factor = rescale_factor(self._epoch_ms, timestamp_ms, self.half_life_s)
                self.rows.scale(factor)
                self._total *= factor
                self._epoch_ms = float(timestamp_ms)
            fw = forward_weight(weight, timestamp_ms, self._epoch_ms, self.half_life_s)
        if prev >= self._total.shape[0]:
            self._total = grown(self._total, prev + 1)
        self._total[prev] += fw
        self.rows.add(prev, item, fw)

    def probabilities(self, prev: int, n: int) -> np.ndarray:
        out = np.zeros(n)
        if prev >= self._total.shape[0] or self._total[prev] <= 0:
            return out
        idx, weights = self.rows.row(prev)
        keep = idx < n
        np.add.at(out, idx[keep], weights[keep] / self._total[prev])
        return out

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        arrays = {f"rows_{k}": v for k, v in self.rows.state().items()}
        arrays["total"] = self._total.copy()
        return {"epoch_ms": self._epoch_ms}, arrays

    def load_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        self._epoch_ms = meta["epoch_ms"]
        self.rows.load_state({k[5:]: v for k, v in arrays.items() if k.startswith("rows_")})
        self._total = np.array(arrays["total"], dtype=np.float64)
