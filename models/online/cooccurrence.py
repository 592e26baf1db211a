"""Item-to-item similarity from co-occurrence in each user's recent window (TencentRec style).

The seam with the stream worker: the *user-partitioned* side knows a user's recent items and
turns each event into :class:`PairDelta` rows with :func:`pair_deltas`; the *item-partitioned*
side :meth:`ItemSimilarity.apply`-s them and publishes :meth:`ItemSimilarity.neighbors`.

Similarity is the cosine over decayed, event-weighted user vectors: an event of weight ``w`` on
item ``a`` after item ``b`` (weight ``v``) in the same window adds ``w * v`` to the pair and
``w * w`` to ``a``'s squared norm, so ``sim(a, b) = C(a, b) / sqrt(N(a) N(b))``. With forward decay
every counter carries the same ``2**(t/half_life)`` scale, which cancels in that ratio: decayed
cosine needs no reading time and no rewriting.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple, TypeVar

import numpy as np

from models.online.decay import advance_epoch, forward_weight
from models.online.rows import CappedRows
from models.online.vocab import Vocabulary, grown

T = TypeVar("T")


class PairDelta(NamedTuple):
    """One increment of item-side statistics; ``item_a == item_b`` increments the norm of a."""

    item_a: str
    item_b: str
    weight: float
    timestamp_ms: int


def pair_weights(
    recent: Sequence[tuple[T, float]],
    item: T,
    weight: float,
    *,
    window: int = 20,
    distance_decay: float = 1.0,
) -> list[tuple[T, float]]:
    """(other item, pair weight) for a new event: the pure core of :func:`pair_deltas`.

    >>> pair_weights([(1, 1.0), (2, 2.0), (1, 1.0)], 3, 2.0, window=5, distance_decay=0.5)
    [(1, 2.0), (2, 2.0)]
    """
    out: list[tuple[T, float]] = []
    seen = {item}
    damp = 1.0
    for other, other_weight in reversed(recent):
        if len(out) >= window:
            break
        if other in seen:
            continue
        seen.add(other)
        out.append((other, weight * other_weight * damp))
        damp *= distance_decay
    return out


def pair_deltas(
    recent: Sequence[tuple[str, float]],
    item_id: str,
    weight: float,
    timestamp_ms: int,
    *,
    window: int = 20,
    distance_decay: float = 1.0,
) -> list[PairDelta]:
    """Deltas for a new event given the user's ``recent`` (item, weight) pairs, oldest first.

    The first delta is the item's own squared weight (its norm); then the newest ``window``
    distinct other items pair with it, the ``d``-th most recent damped by
    ``distance_decay ** (d - 1)`` (1.0: the plain window).

    >>> for d in pair_deltas([("a", 1.0), ("b", 2.0), ("c", 1.0)], "d", 3.0, 5, window=2):
    ...     print(d)
    PairDelta(item_a='d', item_b='d', weight=9.0, timestamp_ms=5)
    PairDelta(item_a='d', item_b='c', weight=3.0, timestamp_ms=5)
    PairDelta(item_a='d', item_b='b', weight=6.0, timestamp_ms=5)
    """
    out = [PairDelta(item_id, item_id, weight * weight, timestamp_ms)]
    for other, w in pair_weights(
        recent, item_id, weight, window=window, distance_decay=distance_decay
    ):
        out.append(PairDelta(item_id, other, w, timestamp_ms))
    return out


class ItemSimilarity:
    """Decayed cosine item-item similarity with at most ``max_neighbors`` pairs per item.

    Parameters
    ----------
    max_neighbors
        Slots per item (the memory bound: ``n_items * max_neighbors`` pairs, whatever the
        stream length); weak pairs are evicted by Space-Saving (:class:`CappedRows`).
    half_life_s
        Time decay of co-occurrence; ``math.inf`` for none.
    vocab
        Shared item vocabulary.

    Examples
    --------
    >>> sim = ItemSimilarity(max_neighbors=10)
    >>> sim.apply(pair_deltas([], "a", 1.0, 0))
    >>> sim.apply(pair_deltas([("a", 1.0)], "b", 1.0, 0))
    >>> sim.apply(pair_deltas([], "b", 1.0, 0))
    >>> round(sim.similarity("a", "b"), 4), sim.neighbors("a", 5)   # 1 / sqrt(1 * 2)
    (0.7071, [('b', 0.7071067811865475)])
    """

    def __init__(
        self,
        max_neighbors: int = 100,
        half_life_s: float = math.inf,
        vocab: Vocabulary | None = None,
    ) -> None:
        self.max_neighbors = max_neighbors
        self.half_life_s = half_life_s
        self.vocab = vocab if vocab is not None else Vocabulary()
        self.rows = CappedRows(max_neighbors)
        self._norm = np.zeros(0, dtype=np.float64)
        self._epoch_ms: float | None = None

    def _fw(self, weight: float, timestamp_ms: float) -> float:
        if math.isinf(self.half_life_s):
            return weight
        self._epoch_ms, factor = advance_epoch(self._epoch_ms, timestamp_ms, self.half_life_s)
        if factor is not None:
            self._norm *= factor
            self.rows.scale(factor)
        return forward_weight(weight, timestamp_ms, self._epoch_ms, self.half_life_s)

    def apply_indices(self, a: int, b: int, weight: float, timestamp_ms: float) -> None:
        """Fast path of :meth:`apply` for already interned items."""
        fw = self._fw(weight, timestamp_ms)
        if a == b:
            if a >= self._norm.shape[0]:
                self._norm = grown(self._norm, a + 1)
            self._norm[a] += fw
        else:
            self.rows.add(a, b, fw)
            self.rows.add(b, a, fw)

    def apply_pairs(self, a: int, others: Sequence[tuple[int, float]], timestamp_ms: float) -> None:
        """Many pairs of one item at one time: :meth:`apply_indices` with one decay factor."""
        if not others:
            return
        scale = self._fw(1.0, timestamp_ms)
        add = self.rows.add
        for b, weight in others:
            add(a, b, weight * scale)
            add(b, a, weight * scale)

    def apply(self, deltas: Iterable[PairDelta]) -> None:
        add = self.vocab.add
        for d in deltas:
            self.apply_indices(add(d.item_a), add(d.item_b), d.weight, d.timestamp_ms)

    def norms(self, n: int) -> np.ndarray:
        self._norm = grown(self._norm, n)
        return self._norm

    def similarity(self, item_a: str, item_b: str) -> float:
        a, b = self.vocab.get(item_a), self.vocab.get(item_b)
        if a is None or b is None:
            return 0.0
        norm = self.norms(max(a, b) + 1)
        denominator = math.sqrt(norm[a] * norm[b])
        return self.rows.get(a, b) / denominator if denominator > 0 else 0.0

    def neighbors(self, item_id: str, m: int = 20) -> list[tuple[str, float]]:
        """Top-``m`` most similar items, best first (what the item side publishes)."""
        a = self.vocab.get(item_id)
        if a is None:
            return []
        idx, sims = self._row_sims(a)
        order = np.argsort(-sims, kind="stable")[:m]
        return [(self.vocab.items[idx[i]], float(sims[i])) for i in order if sims[i] > 0]

    def _row_sims(self, a: int) -> tuple[np.ndarray, np.ndarray]:
        idx, weights = self.rows.row(a)
        norm = self.norms(len(self.vocab))
        denominator = np.sqrt(norm[a] * norm[idx])
        with np.errstate(divide="ignore", invalid="ignore"):
            sims = np.where(denominator > 0, weights / denominator, 0.0)
        return idx, sims

    def scores(self, items: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
        """``sum_j weights[j] * sim(items[j], c)`` for every item ``c < n``, in one numpy pass."""
        out = np.zeros(n)
        if items.shape[0] == 0:
            return out
        self.rows.ensure(n)
        norm = self.norms(n)
        # Unused slots hold index -1 and weight 0: clip them to column 0, where they add 0.
        cols = np.maximum(self.rows.idx[items], 0)
        values = self.rows.cnt[items] - self.rows.err[items]
        denominator = np.sqrt(norm[items][:, None] * norm[cols])
        contrib = np.zeros(values.shape)
        np.divide(values, denominator, out=contrib, where=denominator > 0)
        contrib *= weights[:, None]
        return np.bincount(cols.ravel(), weights=contrib.ravel(), minlength=n)[:n]

    @property
    def n_pairs(self) -> int:
        """Stored directed pair slots (each undirected pair is held in both rows)."""
        return self.rows.n_entries

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        meta = {
            "max_neighbors": self.max_neighbors,
            "half_life_s": self.half_life_s,
            "epoch_ms": self._epoch_ms,
        }
        arrays = {f"rows_{k}": v for k, v in self.rows.state().items()}
        arrays["norm"] = self.norms(len(self.vocab))[: len(self.vocab)].copy()
        return meta, arrays

    def load_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        self._epoch_ms = meta["epoch_ms"]
        self.rows.load_state({k[5:]: v for k, v in arrays.items() if k.startswith("rows_")})
        self._norm = np.array(arrays["norm"], dtype=np.float64)
