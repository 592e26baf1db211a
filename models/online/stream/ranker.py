"""``StreamRanker``: the ranking stage's learner, one per user-side partition.

A River pairwise logistic regression (:class:`models.online.reranker.LinearReranker`) over the
stream features, with the counters the worker exports (updates, pairs, online pairwise accuracy
and log loss, learning time) and a JSON state, so a partition's learner moves with the
partition and survives a restart (docs/stream.md, "Learned state").
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import orjson

from models.online.reranker import LinearReranker
from models.online.stream.scoring import FEATURES, FIXED_BLEND

#: Model name in every cached list's ``model_versions`` (with the update count). v2: AdaGrad
#: steps and candidate positives only (a v1 state is refused: the learner starts anew).
RANKER_NAME = "river-logreg-pairwise-v2"
#: The learner's optimizer and base step (docs/experiments.md has the comparison).
OPTIMIZER = "adagrad"
LEARNING_RATE = 0.1


class StreamRanker:
    """One partition's ranker. Until ``min_trained`` events it ranks by the fixed blend.

    Examples
    --------
    >>> r = StreamRanker(min_trained=1)
    >>> r.learn([[1.0, 0.0, 0.0, 0.0, -1.0, 0.0]] * 20)   # "more knn, less popularity wins"
    >>> w = r.weights(); bool(w[0] > 0 > w[4]), r.n_updates, r.version
    (True, 1, 'river-logreg-pairwise-v2@1')
    >>> StreamRanker.from_json(r.to_json(), min_trained=1).weights().tolist() == w.tolist()
    True
    """

    def __init__(
        self,
        *,
        learning_rate: float = LEARNING_RATE,
        min_trained: int = 1_000,
        optimizer: str = OPTIMIZER,
    ) -> None:
        self.learning_rate = learning_rate
        self.min_trained = min_trained
        self.reranker = LinearReranker(FEATURES, learning_rate, optimizer=optimizer)
        #: events of the partition offered to it, taught pairs or not (exactly once each)
        self.n_events = 0
        self.n_pairs = 0
        self.pairs_correct = 0
        self.loss_sum = 0.0
        self.learn_s = 0.0
        self._weights: np.ndarray | None = None

    @property
    def n_updates(self) -> int:
        """Events learned (each contributes a few pairs)."""
        return self.reranker.n_learned

    @property
    def version(self) -> str:
        return f"{RANKER_NAME}@{self.n_updates}"

    def weights(self) -> np.ndarray:
        """The weight vector scoring uses now: the learned one, or the fixed blend while young."""
        if self._weights is None:
            if self.n_updates >= self.min_trained:
                self._weights = self.reranker.weight_vector()
            else:
                self._weights = np.array(FIXED_BLEND)
        return self._weights

    def learn(self, differences: Sequence[Sequence[float]] | np.ndarray) -> None:
        """One event: each row is ``positive - negative`` features ("the positive wins")."""
        self.learn_events([np.asarray(differences, dtype=np.float64)])

    def learn_events(self, events: Sequence[np.ndarray]) -> None:
        """Several events in order, each a ``(pairs, features)`` array of differences.

        Before learning, every pair is scored with the weights the learner had when the call
        began (for one event: just before it): the online (test-then-train) pairwise accuracy
        and log loss, in one matrix product instead of one per event.
        """
        if not events:
            return
        started = time.thread_time()
        pairs = np.concatenate(events) if len(events) > 1 else events[0]
        margins = pairs @ self.reranker.weight_vector()
        self.pairs_correct += int(np.count_nonzero(margins > 0))
        self.loss_sum += float(np.logaddexp(0.0, -margins).sum())
        self.n_pairs += pairs.shape[0]
        for rows in events:
            self.reranker.learn_pairs(rows.tolist())
        self._weights = None
        self.learn_s += time.thread_time() - started

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "model": RANKER_NAME,
                "features": list(FEATURES),
                **self.reranker.state(),
                "n_events": self.n_events,
                "n_pairs": self.n_pairs,
                "pairs_correct": self.pairs_correct,
                "loss_sum": self.loss_sum,
                "learn_s": self.learn_s,
            }
        )

    @classmethod
    def from_json(
        cls,
        raw: bytes | str,
        *,
        learning_rate: float = LEARNING_RATE,
        min_trained: int = 1_000,
        optimizer: str = OPTIMIZER,
    ) -> StreamRanker:
        """A ranker from :meth:`to_json`; ValueError if the state is not one of ours (another
        model, another optimizer, features that are not a head of ours). A state over the
        features of an earlier release (a head of :data:`FEATURES`) loads, and the features
        added since start at weight 0: an upgrade keeps what the ranker has learned."""
        try:
            data = orjson.loads(raw)
            saved = data.get("features")
            if (
                data.get("model") != RANKER_NAME
                or not isinstance(saved, list)
                or saved != list(FEATURES[: len(saved)])
            ):
                raise ValueError(f"not a {RANKER_NAME} state over {FEATURES}")
            ranker = cls(learning_rate=learning_rate, min_trained=min_trained, optimizer=optimizer)
            ranker.reranker.load_state(data)
            ranker.n_events = int(data["n_events"])
            ranker.n_pairs = int(data["n_pairs"])
            ranker.pairs_correct = int(data["pairs_correct"])
            ranker.loss_sum = float(data["loss_sum"])
            ranker.learn_s = float(data.get("learn_s", 0.0))
        except (KeyError, TypeError, AttributeError, orjson.JSONDecodeError) as exc:
            raise ValueError(f"damaged ranker state: {exc!r}") from None
        return ranker
