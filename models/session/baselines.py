"""Session baselines the GRU must beat: popularity, S-POP, item-kNN, session-kNN, Markov.

Each baseline learns from encoded training sequences and scores a batch of encoded prefixes over
the whole vocabulary (``score(prefixes) -> (batch, vocab_size)``), the same interface as the GRU,
so one evaluator ranks all of them under the same tie and exclusion rules.

Every baseline adds ``1e-6 x`` normalised global popularity to its score: without a tie-break the
conservative tie rule would rank a target last among all the items a baseline scores 0, which
would make a baseline look worse than it is. Padding and OOV columns score ``-inf``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from models.session.data import FIRST_ITEM_INDEX

_TIE_BREAK = 1e-6


class PrefixScorer(Protocol):
    """Anything that scores encoded prefixes over the vocabulary (baselines and the GRU)."""

    def score(self, prefixes: Sequence[np.ndarray]) -> np.ndarray: ...


def _popularity(sequences: Sequence[np.ndarray], vocab_size: int) -> np.ndarray:
    counts = np.zeros(vocab_size, dtype=np.float64)
    for seq in sequences:
        np.add.at(counts, seq, 1.0)
    counts[:FIRST_ITEM_INDEX] = 0.0
    return counts


def _finish(scores: np.ndarray, popularity: np.ndarray) -> np.ndarray:
    total = popularity.max() if popularity.size and popularity.max() > 0 else 1.0
    scores = scores + _TIE_BREAK * popularity / total
    scores[:, :FIRST_ITEM_INDEX] = -np.inf
    return scores.astype(np.float32)


class SessionPopularity:
    """S-POP: items already frequent in this prefix first, then global training popularity.

    >>> model = SessionPopularity(vocab_size=5).fit([np.array([2, 3, 3]), np.array([3, 4])])
    >>> model.score([np.array([4])]).argmax(axis=1).tolist()   # in-session item wins
    [4]
    """

    name = "session_pop"

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self.popularity_ = np.zeros(vocab_size)

    def fit(self, sequences: Sequence[np.ndarray]) -> SessionPopularity:
        self.popularity_ = _popularity(sequences, self.vocab_size)
        return self

    def score(self, prefixes: Sequence[np.ndarray]) -> np.ndarray:
        scores = np.zeros((len(prefixes), self.vocab_size))
        for row, prefix in enumerate(prefixes):
            np.add.at(scores[row], prefix, 1.0)
        # Within equal in-session counts, global popularity decides (it stays below 0.5 < 1).
        scores += 0.5 * self.popularity_ / max(self.popularity_.max(), 1.0)
        scores[:, :FIRST_ITEM_INDEX] = -np.inf
        return scores.astype(np.float32)


class Popularity:
    """Global training popularity, the same list for everyone (the leave-one-out ``Pop``)."""

    name = "pop"

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self.popularity_ = np.zeros(vocab_size)

    def fit(self, sequences: Sequence[np.ndarray]) -> Popularity:
        self.popularity_ = _popularity(sequences, self.vocab_size)
        return self

    def score(self, prefixes: Sequence[np.ndarray]) -> np.ndarray:
        base = self.popularity_ / max(self.popularity_.max(), 1.0)
        scores = np.tile(base, (len(prefixes), 1))
        scores[:, :FIRST_ITEM_INDEX] = -np.inf
        return scores.astype(np.float32)


class ItemKNN:
    """Item-to-item cosine similarity from co-occurrence in training sequences, summed over the
    prefix (the last ``window`` items, more recent ones weighted higher: weight 1/(1+age)).

    Similarity is ``co(i, j) / sqrt(n_i * n_j)`` where ``co`` counts sequences holding both items
    and ``n`` counts sequences holding the item (binary session vectors). Dense ``vocab x vocab``
    float32 matrix: fine for catalogs up to a few thousand items, which is what we train on here.

    >>> knn = ItemKNN(vocab_size=5).fit([np.array([2, 3]), np.array([2, 3]), np.array([4, 2])])
    >>> [round(float(v), 3) for v in knn.score([np.array([3])])[0, 2:]]
    [0.816, 0.0, 0.0]
    """

    name = "item_knn"

    def __init__(self, vocab_size: int, window: int = 10, max_sequence: int = 200) -> None:
        self.vocab_size = vocab_size
        self.window = window
        self.max_sequence = max_sequence
        self.similarity_ = np.zeros((vocab_size, vocab_size), dtype=np.float32)
        self.popularity_ = np.zeros(vocab_size)

    def fit(self, sequences: Sequence[np.ndarray]) -> ItemKNN:
        v = self.vocab_size
        co = np.zeros((v, v), dtype=np.float32)
        support = np.zeros(v, dtype=np.float64)
        for seq in sequences:
            # Long histories (leave-one-out users) are cut into chunks so one heavy user does not
            # dominate, and the cost stays linear in the data.
            for start in range(0, len(seq), self.max_sequence):
                items = np.unique(seq[start : start + self.max_sequence])
                items = items[items >= FIRST_ITEM_INDEX]
                if items.size == 0:
                    continue
                support[items] += 1.0
                co[np.ix_(items, items)] += 1.0
        np.fill_diagonal(co, 0.0)
        norm = np.sqrt(np.maximum(support, 1.0))
        self.similarity_ = (co / norm[:, None] / norm[None, :]).astype(np.float32)
        self.popularity_ = _popularity(sequences, v)
        return self

    def score(self, prefixes: Sequence[np.ndarray]) -> np.ndarray:
        scores = np.zeros((len(prefixes), self.vocab_size), dtype=np.float64)
        for row, prefix in enumerate(prefixes):
            recent = prefix[-self.window :]
            if recent.size == 0:
                continue
            weights = 1.0 / (1.0 + np.arange(recent.size)[::-1])
            scores[row] = weights @ self.similarity_[recent]
        return _finish(scores, self.popularity_)


class Markov:
    """First-order Markov chain: P(next | last item) from training transition counts.

    >>> mc = Markov(vocab_size=5).fit([np.array([2, 3]), np.array([2, 3]), np.array([2, 4])])
    >>> [round(float(v), 3) for v in mc.score([np.array([2])])[0, 2:]]
    [0.0, 0.667, 0.333]
    """

    name = "markov"

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self.transitions_ = np.zeros((vocab_size, vocab_size), dtype=np.float32)
        self.popularity_ = np.zeros(vocab_size)

    def fit(self, sequences: Sequence[np.ndarray]) -> Markov:
        counts = np.zeros((self.vocab_size, self.vocab_size), dtype=np.float32)
        for seq in sequences:
            if len(seq) >= 2:
                np.add.at(counts, (seq[:-1], seq[1:]), 1.0)
        totals = np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
        self.transitions_ = counts / totals
        self.popularity_ = _popularity(sequences, self.vocab_size)
        return self

    def score(self, prefixes: Sequence[np.ndarray]) -> np.ndarray:
        scores = np.zeros((len(prefixes), self.vocab_size), dtype=np.float64)
        for row, prefix in enumerate(prefixes):
            if prefix.size:
                scores[row] = self.transitions_[prefix[-1]]
        return _finish(scores, self.popularity_)


class SessionKNN:
    """Session-kNN (SKNN, Jannach & Ludewig 2017): the ``k`` training sessions most similar to
    the prefix (cosine of binary item sets) vote for their items with their similarity.

    Hard to beat on click logs (Ludewig et al. 2021), and it recommends items the prefix holds
    when similar sessions came back to them. Sparse sessions x items matrix (scipy).

    >>> knn = SessionKNN(vocab_size=6, k=2).fit(
    ...     [np.array([2, 3, 4]), np.array([2, 3, 5]), np.array([4, 5])])
    >>> int(knn.score([np.array([2, 3])])[0].argmax())   # both neighbours hold 2 and 3
    2
    """

    name = "session_knn"

    def __init__(self, vocab_size: int, k: int = 100) -> None:
        self.vocab_size = vocab_size
        self.k = k
        self.sessions_: Any = None
        self.popularity_ = np.zeros(vocab_size)

    def fit(self, sequences: Sequence[np.ndarray]) -> SessionKNN:
        from scipy import sparse

        rows, cols = [], []
        for n, seq in enumerate(sequences):
            items = np.unique(seq[seq >= FIRST_ITEM_INDEX])
            rows.extend([n] * items.size)
            cols.extend(items.tolist())
        matrix = sparse.csr_matrix(
            (np.ones(len(rows), np.float32), (rows, cols)),
            shape=(len(sequences), self.vocab_size),
        )
        lengths = np.sqrt(np.maximum(np.asarray(matrix.sum(axis=1)).ravel(), 1.0))
        self.sessions_ = (sparse.diags(1.0 / lengths).astype(np.float32) @ matrix).tocsc()
        self.binary_ = matrix
        self.popularity_ = _popularity(sequences, self.vocab_size)
        return self

    def score(self, prefixes: Sequence[np.ndarray]) -> np.ndarray:
        scores = np.zeros((len(prefixes), self.vocab_size), dtype=np.float64)
        if self.sessions_ is None or not self.sessions_.shape[0]:
            return _finish(scores, self.popularity_)
        for row, prefix in enumerate(prefixes):
            items = np.unique(prefix[prefix >= FIRST_ITEM_INDEX])
            if not items.size:
                continue
            sims = np.asarray(self.sessions_[:, items].sum(axis=1)).ravel() / np.sqrt(items.size)
            near = np.flatnonzero(sims)
            if near.size > self.k:
                near = near[np.argpartition(-sims[near], self.k - 1)[: self.k]]
            scores[row] = self.binary_[near].T @ sims[near]
        return _finish(scores, self.popularity_)
