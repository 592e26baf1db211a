"""Decayed item popularity and the "trending now" view, as forward-decayed counters.

Forward decay (see :mod:`models.online.decay`) stores ``w * 2**((t - epoch)/half_life)`` once per
event, so the *order* of items never depends on the reading time and ``top`` needs no rewrite of
the counters; ``math.inf`` as half-life gives plain (global) counts.
"""

from __future__ import annotations

import math

import numpy as np

from models.online.decay import advance_epoch, forward_to_decayed, forward_weight
from models.online.vocab import Vocabulary, grown


class DecayedPopularity:
    """Exponentially time-decayed popularity of every item.

    Parameters
    ----------
    half_life_s
        A weight seen ``half_life_s`` seconds ago counts half. ``math.inf``: no decay.
    vocab
        Shared item vocabulary (a new one by default).

    Examples
    --------
    >>> pop = DecayedPopularity(half_life_s=3600.0)
    >>> pop.learn_one("a", 1.0, 0)
    >>> pop.learn_one("b", 1.0, 3_600_000)
    >>> pop.score("a", 3_600_000), pop.score("b", 3_600_000)
    (0.5, 1.0)
    >>> pop.top(2, now_ms=3_600_000)
    [('b', 1.0), ('a', 0.5)]
    """

    def __init__(self, half_life_s: float = 30 * 86_400.0, vocab: Vocabulary | None = None):
        self.half_life_s = half_life_s
        self.vocab = vocab if vocab is not None else Vocabulary()
        self._epoch_ms: float | None = None
        self._forward = np.zeros(0, dtype=np.float64)

    def _fw(self, weight: float, timestamp_ms: float) -> float:
        if math.isinf(self.half_life_s):
            return weight
        self._epoch_ms, factor = advance_epoch(self._epoch_ms, timestamp_ms, self.half_life_s)
        if factor is not None:
            self._forward *= factor
        return forward_weight(weight, timestamp_ms, self._epoch_ms, self.half_life_s)

    def learn_index(self, index: int, weight: float, timestamp_ms: float) -> None:
        """Fast path for a caller that already interned the item."""
        if index >= self._forward.shape[0]:
            self._forward = grown(self._forward, index + 1)
        # Compute first: a rescale inside _fw rewrites the array this line reads.
        fw = self._fw(weight, timestamp_ms)
        self._forward[index] += fw

    def learn_one(self, item_id: str, weight: float, timestamp_ms: float) -> None:
        self.learn_index(self.vocab.add(item_id), weight, timestamp_ms)

    def _decayed(self, stored: float | np.ndarray, now_ms: float) -> float | np.ndarray:
        if math.isinf(self.half_life_s) or self._epoch_ms is None:
            return stored
        return forward_to_decayed(stored, now_ms, self._epoch_ms, self.half_life_s)  # type: ignore[arg-type]

    def score(self, item_id: str, now_ms: float) -> float:
        index = self.vocab.get(item_id)
        if index is None or index >= self._forward.shape[0]:
            return 0.0
        return float(self._decayed(float(self._forward[index]), now_ms))

    def vector(self, n: int | None = None) -> np.ndarray:
        """Forward-decayed counts over the vocabulary (same order as decayed ones, any time)."""
        n = len(self.vocab) if n is None else n
        self._forward = grown(self._forward, n)
        return self._forward[:n]

    def top(self, k: int, now_ms: float) -> list[tuple[str, float]]:
        stored = self.vector()
        order = np.argsort(-stored, kind="stable")[:k]
        values = np.asarray(self._decayed(stored[order], now_ms), np.float64).tolist()
        items = self.vocab.items
        return [(items[i], v) for i, v in zip(order.tolist(), values, strict=True)]

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        meta = {"half_life_s": self.half_life_s, "epoch_ms": self._epoch_ms}
        return meta, {"forward": self.vector().copy()}

    def load_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        self._epoch_ms = meta["epoch_ms"]
        self._forward = np.array(arrays["forward"], dtype=np.float64)


class Trending:
    """Items whose recent rate beats their longer-run rate: the "trending now" view.

    Score is the lift ``(short + prior) / (long * short_hl / long_hl + prior)``: a decayed sum of a
    steady event rate is proportional to its half-life, so a steady item scores about 1 and a
    surging one more; ``prior`` keeps a single fresh event from topping the list.

    Examples
    --------
    >>> t = Trending(short_half_life_s=3600.0, long_half_life_s=86_400.0, prior=1.0)
    >>> for h in range(48):
    ...     t.learn_one("steady", 1.0, h * 3_600_000)
    >>> for _ in range(5):
    ...     t.learn_one("new", 1.0, 47 * 3_600_000)
    >>> [item for item, _ in t.top(2, now_ms=47 * 3_600_000)]
    ['new', 'steady']
    """

    def __init__(
        self,
        short_half_life_s: float = 3_600.0,
        long_half_life_s: float = 7 * 86_400.0,
        prior: float = 2.0,
        vocab: Vocabulary | None = None,
    ):
        self.short_half_life_s = short_half_life_s
        self.long_half_life_s = long_half_life_s
        self.prior = prior
        self.vocab = vocab if vocab is not None else Vocabulary()
        self.short = DecayedPopularity(short_half_life_s, self.vocab)
        self.long = DecayedPopularity(long_half_life_s, self.vocab)

    def learn_one(self, item_id: str, weight: float, timestamp_ms: float) -> None:
        index = self.vocab.add(item_id)
        self.short.learn_index(index, weight, timestamp_ms)
        self.long.learn_index(index, weight, timestamp_ms)

    def scores(self, now_ms: float) -> np.ndarray:
        short = np.asarray(self.short._decayed(self.short.vector(), now_ms))
        long = np.asarray(self.long._decayed(self.long.vector(), now_ms))
        ratio = self.short_half_life_s / self.long_half_life_s
        return (short + self.prior) / (long * ratio + self.prior)

    def top(self, k: int, now_ms: float) -> list[tuple[str, float]]:
        scores = self.scores(now_ms)
        order = np.argsort(-scores, kind="stable")[:k]
        return [(self.vocab.items[i], float(scores[i])) for i in order]
