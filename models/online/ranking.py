"""Top-k selection from a dense score vector, with the evaluator's exclusion and tie rules.

Rules: excluded indices (the user's own items) never appear; among equal scores the more popular
item wins (``tiebreak``), then the lower index, so every model ranks deterministically and a model
that scores nothing degrades to popularity instead of to index order.
"""

from __future__ import annotations

import numpy as np


def top_k(
    scores: np.ndarray,
    k: int,
    excluded: np.ndarray | None = None,
    tiebreak: np.ndarray | None = None,
) -> np.ndarray:
    """Indices of the ``k`` best items, best first.

    >>> top_k(np.array([0.0, 2.0, 1.0, 2.0]), 2, tiebreak=np.array([9.0, 1.0, 0.0, 5.0]))
    array([3, 1])
    >>> top_k(np.array([3.0, 2.0, 1.0]), 2, excluded=np.array([0]))
    array([1, 2])
    """
    n = scores.shape[0]
    if n == 0 or k <= 0:
        return np.empty(0, dtype=np.int64)
    s = scores.astype(np.float64, copy=True)
    if excluded is not None and len(excluded):
        s[excluded] = -np.inf
    available = n if excluded is None else n - int(np.isinf(s).sum())
    k = min(k, available)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if k < n:
        # Everything tied with the k-th best score is a candidate, so ties are decided below.
        kth = np.partition(s, n - k)[n - k]
        candidates = np.flatnonzero(s >= kth)
    else:
        candidates = np.arange(n)
    candidates = candidates[np.isfinite(s[candidates])]
    secondary = np.zeros(candidates.shape[0]) if tiebreak is None else -tiebreak[candidates]
    order = np.lexsort((candidates, secondary, -s[candidates]))
    return candidates[order[:k]]
