"""The session component that holds on click logs: the GRU mixed with the session baselines.

The parts: the GRU, S-POP, session-kNN, item-kNN and Markov. Each part's scores are normalised
per row (the GRU's through a softmax) and summed with weights chosen on the validation cases from
a grid that includes every part alone, so on validation the mix is never below its best part:
where the GRU loses (small click logs with repeat views) the weights move to the baselines
instead of the model being only refused. Repeat-aware: nothing in the prefix is masked, so an
item viewed again can come back, as S-POP recommends it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import product
from typing import Any

import numpy as np

from models.session.baselines import PrefixScorer
from models.session.data import FIRST_ITEM_INDEX, EvalCase, Vocabulary

#: parts whose scores are logits (a softmax makes them comparable to the others' shares)
LOGIT_PARTS = frozenset({"gru"})
#: the grid's step: 0.25 gives 70 mixes of five parts, each part alone among them
GRID_STEP = 0.25


def normalised(name: str, scores: np.ndarray) -> np.ndarray:
    """Each row scaled into [0, 1] (min to 0, max to 1), logits through a softmax first;
    padding and OOV columns (``-inf``) stay ``-inf``.

    >>> normalised("markov", np.array([[-np.inf, 1.0, 3.0]])).tolist()
    [[-inf, 0.0, 1.0]]
    """
    finite = np.isfinite(scores)
    values = np.where(finite, scores, np.nan).astype(np.float64)
    if name in LOGIT_PARTS:
        values = np.exp(values - np.nanmax(values, axis=1, keepdims=True))
    low = np.nanmin(values, axis=1, keepdims=True)
    span = np.nanmax(values, axis=1, keepdims=True) - low
    out = (values - low) / np.where(span > 0, span, 1.0)
    return np.where(finite, out, -np.inf)


def grid(parts: int, step: float = GRID_STEP) -> list[tuple[float, ...]]:
    """Every weight vector on the simplex at ``step`` (each part alone included).

    >>> grid(2, 0.5)
    [(0.0, 1.0), (0.5, 0.5), (1.0, 0.0)]
    """
    n = round(1 / step)
    return [
        tuple(c * step for c in combo)
        for combo in product(range(n + 1), repeat=parts)
        if sum(combo) == n
    ]


def _ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Conservative 1-based rank of each row's target (ties against it; 0 = no rank)."""
    own = scores[np.arange(targets.shape[0]), targets]
    ranks = (scores >= own[:, None]).sum(axis=1)
    return np.where(np.isfinite(own) & (targets >= FIRST_ITEM_INDEX), ranks, 0)


def _mrr_recall(ranks: np.ndarray, k: int = 20) -> tuple[float, float]:
    hit = (ranks >= 1) & (ranks <= k)
    return float(np.where(hit, 1.0 / np.maximum(ranks, 1), 0.0).mean()), float(hit.mean())


class SessionBlend:
    """Weighted parts behind the session model's verbs (``score``, ``recommend``).

    Examples
    --------
    >>> from models.session.baselines import Markov, SessionPopularity
    >>> vocab = Vocabulary(["a", "b", "c"])
    >>> seqs = [vocab.encode("abab"), vocab.encode("ac")]
    >>> parts = {"session_pop": SessionPopularity(vocab.size).fit(seqs),
    ...          "markov": Markov(vocab.size).fit(seqs)}
    >>> blend = SessionBlend.fit(parts, vocab, [EvalCase(("b", "a", "b"), "b")])
    >>> blend.weights, blend.recommend([["b", "a", "b"]], 1)[0][0][0]   # b again: a repeat
    ({'session_pop': 0.75, 'markov': 0.25}, 'b')
    """

    def __init__(
        self,
        parts: Mapping[str, PrefixScorer],
        vocabulary: Vocabulary,
        weights: Mapping[str, float],
        manifest: dict[str, Any] | None = None,
    ) -> None:
        self.parts = dict(parts)
        self.vocabulary = vocabulary
        self.weights = {name: float(weights.get(name, 0.0)) for name in self.parts}
        self.manifest: dict[str, Any] = dict(manifest or {})

    @classmethod
    def fit(
        cls,
        parts: Mapping[str, PrefixScorer],
        vocabulary: Vocabulary,
        validation: Sequence[EvalCase],
        max_cases: int = 3000,
        seed: int = 0,
    ) -> SessionBlend:
        """The mix of ``parts`` that is furthest above the best part alone on both validation
        MRR@20 and Recall@20 (the weaker of the two ratios; then MRR@20; then the earliest on
        the grid), over at most ``max_cases`` validation cases."""
        cases = list(validation)
        if len(cases) > max_cases:
            pick = np.random.default_rng(seed).choice(len(cases), max_cases, replace=False)
            cases = [cases[i] for i in np.sort(pick)]
        names = list(parts)
        if not cases:  # nothing to choose on: the first part alone
            return cls(parts, vocabulary, {names[0]: 1.0})
        prefixes = [vocabulary.encode(c.prefix) for c in cases]
        targets = np.array([vocabulary.index(c.target) for c in cases])
        scored = [normalised(n, parts[n].score(prefixes)) for n in names]
        mixes = grid(len(names))
        found = [
            _mrr_recall(
                _ranks(
                    np.asarray(sum(w * s for w, s in zip(mix, scored, strict=True) if w > 0)),
                    targets,
                )
            )
            for mix in mixes
        ]
        alone = [f for mix, f in zip(mixes, found, strict=True) if max(mix) == 1.0]
        best_mrr = max(f[0] for f in alone) or 1.0
        best_recall = max(f[1] for f in alone) or 1.0
        # both metrics against the best part alone at each: the weakest ratio, then MRR
        chosen = max(
            zip(mixes, found, strict=True),
            key=lambda mf: (min(mf[1][0] / best_mrr, mf[1][1] / best_recall), mf[1][0]),
        )[0]
        return cls(parts, vocabulary, dict(zip(names, chosen, strict=True)))

    def score(self, prefixes: Sequence[np.ndarray]) -> np.ndarray:
        """The mix over the vocabulary for encoded prefixes (padding and OOV ``-inf``)."""
        total = np.zeros((len(prefixes), self.vocabulary.size))
        for name, weight in self.weights.items():
            if weight > 0:
                total += weight * normalised(name, self.parts[name].score(prefixes))
        total[:, :FIRST_ITEM_INDEX] = -np.inf
        return total.astype(np.float32)

    def recommend(
        self,
        prefixes: Sequence[Sequence[str]],
        k: int,
        exclude: Sequence[Iterable[str]] | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Top-``k`` (item, score) per prefix, best first; ``exclude[i]`` never returned; an
        empty prefix gets an empty list (``SessionModel.recommend``'s contract)."""
        if k < 1:
            raise ValueError("k must be >= 1")
        scores = self.score([self.vocabulary.encode(p) for p in prefixes])
        out: list[list[tuple[str, float]]] = []
        for row, prefix in enumerate(prefixes):
            if not len(prefix):
                out.append([])
                continue
            line = scores[row]
            if exclude is not None:
                drop = self.vocabulary.encode(exclude[row])
                line[drop[drop >= FIRST_ITEM_INDEX]] = -np.inf
            top = np.argsort(-line, kind="stable")[:k]
            out.append(
                [
                    (self.vocabulary.item(int(i)), float(line[i]))
                    for i in top
                    if np.isfinite(line[i])
                ]
            )
        return out

    @property
    def version(self) -> str | None:
        return self.manifest.get("version")
