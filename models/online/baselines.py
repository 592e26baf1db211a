"""The baselines of the prequential comparison, behind the same verbs as our model.

They are deliberately plain and *unbounded* (dense count matrices): they are the yardstick, not
something to deploy. Every model here ranks the items seen so far, minus the user's own, ties
broken by global popularity (see :mod:`models.online.ranking`).
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from models.events import Interaction
from models.online.popularity import DecayedPopularity
from models.online.ranking import top_k
from models.online.vocab import Vocabulary, grown


class OnlineRanker(Protocol):
    """What the prequential evaluator needs: River's ``learn_one`` and a top-k ``rank``."""

    def learn_one(self, event: Interaction) -> None: ...

    def rank(self, user_id: str, k: int = 10, now_ms: int | None = None) -> list[str]: ...


def grown_square(matrix: np.ndarray, size: int) -> np.ndarray:
    if matrix.shape[0] >= size:
        return matrix
    capacity = max(size, 2 * matrix.shape[0], 64)
    out = np.zeros((capacity, capacity), dtype=matrix.dtype)
    n = matrix.shape[0]
    out[:n, :n] = matrix
    return out


class _Baseline:
    def __init__(self) -> None:
        self.vocab = Vocabulary()
        self.counts = np.zeros(0)
        self.users: dict[str, list[int]] = {}
        self.user_sets: dict[str, set[int]] = {}

    def _observe(self, event: Interaction) -> tuple[int, list[int]]:
        item = self.vocab.add(event.item_id)
        self.counts = grown(self.counts, item + 1)
        self.counts[item] += 1.0
        history = self.users.setdefault(event.user_id, [])
        before = list(history)
        if item not in self.user_sets.setdefault(event.user_id, set()):
            self.user_sets[event.user_id].add(item)
        history.append(item)
        return item, before

    def _scores(self, user_id: str, n: int, now_ms: int | None) -> np.ndarray:
        raise NotImplementedError

    def rank(self, user_id: str, k: int = 10, now_ms: int | None = None) -> list[str]:
        n = len(self.vocab)
        excluded = np.fromiter(self.user_sets.get(user_id, ()), dtype=np.int64)
        order = top_k(self._scores(user_id, n, now_ms), k, excluded, self.counts[:n])
        return [self.vocab.items[i] for i in order]


class PopularityBaseline(_Baseline):
    """Most interacted items overall (``half_life_s=inf``) or recently (decayed).

    Examples
    --------
    >>> from models.events import Interaction
    >>> m = PopularityBaseline()
    >>> for u, i in (("a", "x"), ("b", "x"), ("b", "y")):
    ...     m.learn_one(Interaction(u, i, "view", 1_700_000_000_000))
    >>> m.rank("c", 2), m.rank("a", 2)
    (['x', 'y'], ['y'])
    """

    def __init__(self, half_life_s: float = math.inf) -> None:
        super().__init__()
        self.popularity = DecayedPopularity(half_life_s, self.vocab)

    def learn_one(self, event: Interaction) -> None:
        item, _ = self._observe(event)
        self.popularity.learn_index(item, 1.0, event.timestamp_ms)

    def _scores(self, user_id: str, n: int, now_ms: int | None) -> np.ndarray:
        return self.popularity.vector(n)


class ItemKNNBaseline(_Baseline):
    """Cosine co-occurrence, summed over the user's last ``recent`` items.

    Co-occurrence counts every pair of distinct items in a user's history (``pair_window=None``)
    or only pairs within ``pair_window`` consecutive events; unweighted, undecayed, uncapped.
    """

    def __init__(self, recent: int = 20, pair_window: int | None = None) -> None:
        super().__init__()
        self.recent = recent
        self.pair_window = pair_window
        self.cooc = np.zeros((0, 0), dtype=np.float32)
        self.distinct_users = np.zeros(0)  # the squared norm of an item's binary user vector

    def learn_one(self, event: Interaction) -> None:
        seen = event.item_id in self.vocab and self.vocab.add(event.item_id) in self.user_sets.get(
            event.user_id, ()
        )
        item, before = self._observe(event)
        self.cooc = grown_square(self.cooc, len(self.vocab))
        self.distinct_users = grown(self.distinct_users, len(self.vocab))
        if seen:
            return  # a repeat adds no new pair to a binary user vector
        self.distinct_users[item] += 1.0
        others = before if self.pair_window is None else before[-self.pair_window :]
        others_idx = np.unique(np.asarray(others, dtype=np.int64))
        others_idx = others_idx[others_idx != item]
        self.cooc[item, others_idx] += 1.0
        self.cooc[others_idx, item] += 1.0

    def _scores(self, user_id: str, n: int, now_ms: int | None) -> np.ndarray:
        history = self.users.get(user_id)
        if not history:
            return np.zeros(n)
        recent = np.unique(np.asarray(history[-self.recent :], dtype=np.int64))
        counts = self.distinct_users[:n]
        rows = self.cooc[recent, :n]
        denominator = np.sqrt(counts[recent][:, None] * counts[None, :])
        with np.errstate(divide="ignore", invalid="ignore"):
            sims = np.where(denominator > 0, rows / denominator, 0.0)
        return sims.sum(axis=0)


class MarkovBaseline(_Baseline):
    """First-order transitions from the user's previous item: ``count(prev -> c)``."""

    def __init__(self) -> None:
        super().__init__()
        self.trans = np.zeros((0, 0), dtype=np.float32)

    def learn_one(self, event: Interaction) -> None:
        item, before = self._observe(event)
        self.trans = grown_square(self.trans, len(self.vocab))
        if before:
            self.trans[before[-1], item] += 1.0

    def _scores(self, user_id: str, n: int, now_ms: int | None) -> np.ndarray:
        history = self.users.get(user_id)
        if not history:
            return np.zeros(n)
        return self.trans[history[-1], :n].astype(np.float64)


def baseline_models() -> dict[str, OnlineRanker]:
    """The baselines every model change is measured against, by their result names."""
    return {
        "popularity": PopularityBaseline(),
        "decayed_popularity": PopularityBaseline(half_life_s=30 * 86_400.0),
        "itemknn": ItemKNNBaseline(recent=20),
        "markov": MarkovBaseline(),
    }
