"""Ranking metrics shared by the prequential evaluator, the session trainer and the benchmarks.

Rules, written down once:
- A *rank* is 1-based; ``None`` means the target was not in the list (or was excluded).
- HitRate@k / Recall@k (one target per case, so they coincide): 1 if rank <= k.
- MRR@k: 1/rank if rank <= k else 0.  NDCG@k: 1/log2(rank+1) if rank <= k else 0.
- Ties in a score vector are counted *against* the target ("conservative", as the GRU4Rec authors
  recommend): the rank is 1 + the number of other candidates scoring >= the target. A model that
  gives every item the same score therefore ranks every target last, and cannot look good by ties.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def rank_in_list(target: Any, ranked: Sequence[Any]) -> int | None:
    """1-based position of ``target`` in a ranked list, or None.

    >>> rank_in_list("b", ["a", "b", "c"]), rank_in_list("z", ["a"])
    (2, None)
    """
    for position, candidate in enumerate(ranked, start=1):
        if candidate == target:
            return position
    return None


def rank_in_scores(
    scores: np.ndarray, target: int, excluded: np.ndarray | None = None
) -> int | None:
    """Conservative rank of column ``target`` in a 1-D score vector.

    ``excluded`` is a boolean mask (or index array) of candidates removed from the ranking; an
    excluded target has no rank.

    >>> rank_in_scores(np.array([0.1, 0.5, 0.5, 0.2]), 1)   # tie with item 2 counts against
    2
    >>> rank_in_scores(np.array([0.9, 0.5, 0.1]), 1, excluded=np.array([0]))
    1
    """
    target_score = scores[target]
    beats = scores >= target_score
    beats[target] = False
    if excluded is not None:
        mask = np.zeros(scores.shape[0], dtype=bool)
        mask[excluded] = True
        if mask[target]:
            return None
        beats &= ~mask
    if not np.isfinite(target_score):
        return None
    return int(beats.sum()) + 1


@dataclass(slots=True)
class RankAccumulator:
    """Collects ranks and reports HitRate/Recall, MRR and NDCG at the given cut-offs.

    >>> acc = RankAccumulator(cutoffs=(1, 10))
    >>> for r in (1, 4, None, 12):
    ...     acc.add(r)
    >>> acc.summary()["hit_rate@10"], round(acc.summary()["mrr@10"], 4)
    (0.5, 0.3125)
    """

    cutoffs: tuple[int, ...] = (10, 20)
    count: int = 0
    _hits: dict[int, int] = field(default_factory=dict)
    _rr: dict[int, float] = field(default_factory=dict)
    _ndcg: dict[int, float] = field(default_factory=dict)

    def add(self, rank: int | None) -> None:
        self.count += 1
        if rank is None:
            return
        for k in self.cutoffs:
            if rank <= k:
                self._hits[k] = self._hits.get(k, 0) + 1
                self._rr[k] = self._rr.get(k, 0.0) + 1.0 / rank
                self._ndcg[k] = self._ndcg.get(k, 0.0) + 1.0 / math.log2(rank + 1)

    def summary(self) -> dict[str, float]:
        """``hit_rate@k``, ``recall@k`` (same value), ``mrr@k``, ``ndcg@k`` for every cut-off."""
        n = max(self.count, 1)
        out: dict[str, float] = {}
        for k in self.cutoffs:
            hit = self._hits.get(k, 0) / n
            out[f"hit_rate@{k}"] = hit
            out[f"recall@{k}"] = hit
            out[f"mrr@{k}"] = self._rr.get(k, 0.0) / n
            out[f"ndcg@{k}"] = self._ndcg.get(k, 0.0) / n
        return out
