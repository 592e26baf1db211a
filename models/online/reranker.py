"""The River re-ranker: an online logistic regression over the candidate-source scores.

Why this model (numbers in docs/online-models.md): on implicit feedback with sampled negatives it
learns how much to trust each source (item neighbours, transitions, similar users, content,
popularity) for *this* stream, and because it is linear its scores over every candidate are one
numpy dot product with its weights, mirrored out of River. ``river.facto.FMClassifier`` with
user and item ids as extra features was compared (scored per candidate, ``predict_proba_one``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from river import facto, linear_model, optim

#: River optimizers by name. ``adagrad`` gives each weight a step that shrinks with the
#: squared gradients it has seen: where the pairs are mostly noise (MovieLens) plain SGD's
#: weights random-walk, and a live learner that sees the same events in micro-batches walks
#: elsewhere (docs/experiments.md).
OPTIMIZERS = {"sgd": optim.SGD, "adagrad": optim.AdaGrad}


class LinearReranker:
    """``river.linear_model.LogisticRegression`` trained on (positive, sampled negatives) rows.

    Examples
    --------
    >>> r = LinearReranker(("a", "b"), learning_rate=0.5)
    >>> for _ in range(50):
    ...     r.learn(np.array([1.0, 0.0]), np.array([[0.0, 1.0]]))
    >>> scores = r.score(np.array([[1.0, 0.0], [0.0, 1.0]]))   # features x items
    >>> bool(scores[0] > scores[1])
    True
    """

    def __init__(
        self,
        features: Sequence[str],
        learning_rate: float = 0.05,
        l2: float = 0.0,
        optimizer: str = "sgd",
    ):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
        self.features = tuple(features)
        self.learning_rate = learning_rate
        self.l2 = l2
        self.optimizer = optimizer
        self.model = linear_model.LogisticRegression(
            optimizer=OPTIMIZERS[optimizer](learning_rate), l2=l2, intercept_lr=0.0
        )
        self.n_learned = 0

    def _row(self, values: np.ndarray) -> dict[str, float]:
        # Without L2 a zero feature gets a zero gradient, so River may as well not see it (most
        # difference rows are sparse: the session features are zero on the other side of a
        # session boundary); with L2 every weight must be visited.
        return {
            name: float(v)
            for name, v in zip(self.features, values, strict=True)
            if v != 0.0 or self.l2 > 0
        }

    def learn(self, positive: np.ndarray, negatives: np.ndarray, **_: object) -> None:
        """Pairwise (RankNet-style): "positive beats negative" on feature differences.

        Pointwise logistic loss on sampled negatives learns the sampling distribution (uniform
        negatives are unpopular, so popularity looks good; hard ones are highly scored, so the
        neighbour score looks bad); the pairwise form learns only the order, which is what a
        top-k list needs, and needs no intercept (so ``(d, True)`` and ``(-d, False)`` have the
        same gradient: one of them is enough).
        """
        self.learn_pairs(positive - negatives)

    def learn_pairs(self, differences: Sequence[Sequence[float]] | np.ndarray) -> None:
        """One event's pairs, given as ``positive - negative`` feature rows."""
        for row in differences:
            self.model.learn_one(self._row(row), True)
        self.n_learned += 1

    def weight_vector(self) -> np.ndarray:
        weights = self.model.weights
        return np.array([weights.get(name, 0.0) for name in self.features])

    def score(self, matrix: np.ndarray, **_: object) -> np.ndarray:
        """Logits for a (features x candidates) matrix: the mirrored weights, one dot product."""
        return self.weight_vector() @ matrix

    def state(self) -> dict:
        """JSON-ready: the weights and what the optimizer carries between steps (AdaGrad's
        squared-gradient sums), so a restored learner steps exactly as the saved one would."""
        opt = self.model.optimizer
        return {
            "weights": self.model.weights,
            "intercept": self.model.intercept,
            "n_learned": self.n_learned,
            "optimizer": {
                "name": self.optimizer,
                "n_iterations": opt.n_iterations,
                "g2": dict(getattr(opt, "g2", {})),
            },
        }

    def load_state(self, state: dict) -> None:
        """Inverse of :meth:`state`; ValueError if it was saved by another optimizer."""
        saved = state.get("optimizer", {"name": "sgd", "n_iterations": 0, "g2": {}})
        if saved["name"] != self.optimizer:
            raise ValueError(f"state of a {saved['name']} learner, this one is {self.optimizer}")
        for name, value in state["weights"].items():
            self.model._weights[name] = float(value)
        self.model.intercept = float(state["intercept"])
        self.n_learned = int(state["n_learned"])
        opt = self.model.optimizer
        opt.n_iterations = int(saved["n_iterations"])
        if hasattr(opt, "g2"):
            opt.g2.update({name: float(v) for name, v in saved["g2"].items()})


class FMReranker:
    """``river.facto.FMClassifier`` over the source scores plus user and item ids.

    Scored per candidate with ``predict_proba_one`` (River's own path), so it only re-ranks a
    short list; kept for the comparison that chose :class:`LinearReranker`.
    """

    def __init__(
        self,
        features: Sequence[str],
        learning_rate: float = 0.05,
        n_factors: int = 8,
        seed: int = 0,
    ):
        self.features = tuple(features)
        self.model = facto.FMClassifier(
            n_factors=n_factors,
            weight_optimizer=optim.SGD(learning_rate),
            latent_optimizer=optim.SGD(learning_rate),
            seed=seed,
        )
        self.n_learned = 0

    def _row(self, values: np.ndarray, user_id: str, item_id: str) -> dict[str, float | str]:
        row: dict[str, float | str] = {
            name: float(v) for name, v in zip(self.features, values, strict=True)
        }
        row["user"] = user_id
        row["item"] = item_id
        return row

    def learn(
        self,
        positive: np.ndarray,
        negatives: np.ndarray,
        *,
        user_id: str = "",
        items: Sequence[str] = (),
    ) -> None:
        self.model.learn_one(self._row(positive, user_id, items[0]), True)
        for row, item in zip(negatives, items[1:], strict=True):
            self.model.learn_one(self._row(row, user_id, item), False)
        self.n_learned += 1

    def score(
        self, matrix: np.ndarray, *, user_id: str = "", items: Sequence[str] = ()
    ) -> np.ndarray:
        return np.array(
            [
                self.model.predict_proba_one(self._row(matrix[:, j], user_id, item))[True]
                for j, item in enumerate(items)
            ]
        )
