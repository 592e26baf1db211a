"""A planted-truth *reference* for the synthetic stream: how well the generator itself would rank.

Not a baseline and not a competitor: it reads the generator's hidden world (item clusters, the
successor chain, the in-cluster Zipf weights, every user's cluster taste), which no model can see.
Scored by the same prequential loop, with the same candidates and tie rule, it is the ceiling of
this protocol, so a gap between a model and Markov can be read against the room there is. At
request time it knows what a model knows (the user's past events and the request time) and ranks
by the generator's true next-event probability. The probabilities: docs/online-models.md, "How
the oracle scores".
"""

from __future__ import annotations

import numpy as np

from models.events import Interaction
from models.online.baselines import _Baseline
from models.online.vocab import grown


class PlantedOracle(_Baseline):
    """Scores every known item by its true next-event probability under the generator.

    ``world`` is a :class:`models.datasets.synthetic.SyntheticWorld` (``dataset.planted``): any
    object with ``item_cluster``, ``successor``, ``user_taste`` and optionally
    ``item_popularity`` and ``chain_position``.

    Examples
    --------
    >>> from types import SimpleNamespace   # stands in for a SyntheticWorld
    >>> world = SimpleNamespace(
    ...     item_cluster={"a": 0, "b": 0, "c": 0, "x": 1},
    ...     successor={"a": "c", "b": "a", "c": "b", "x": "x"},
    ...     user_taste={"u": np.array([0.0, 1.0]), "v": np.array([1.0, 0.0])},
    ...     item_popularity={"a": 0.6, "b": 0.3, "c": 0.1, "x": 1.0},
    ... )
    >>> oracle = PlantedOracle(world)
    >>> t = 1_700_000_000_000
    >>> for n, item in enumerate(["x", "b", "c", "a"]):
    ...     oracle.learn_one(Interaction("w", item, "view", t + n))
    >>> oracle.learn_one(Interaction("v", "a", "view", t + 10_000))
    >>> oracle.rank("v", 3, t + 20_000)      # in session: the successor c beats popular b
    ['c', 'b', 'x']
    >>> oracle.rank("u", 2, t + 20_000)      # first event, taste is all cluster 1
    ['x', 'a']
    """

    def __init__(
        self,
        world: object,
        *,
        follow_chain_p: float = 0.6,
        noise_p: float = 0.05,
        session_gap_s: float = 1_800.0,
    ) -> None:
        super().__init__()
        self.world = world
        self.follow_chain_p = follow_chain_p
        self.noise_p = noise_p
        self.session_gap_s = session_gap_s
        self._cluster = np.zeros(0, dtype=np.int64)
        self._weight = np.zeros(0)
        self._successor: dict[int, str] = {}
        self._last_ms: dict[str, int] = {}
        self._session_cluster: dict[str, int] = {}
        self._session_items: dict[str, list[str]] = {}

    def learn_one(self, event: Interaction) -> None:
        world = self.world
        new_session = self._is_new_session(event.user_id, event.timestamp_ms)
        item, _ = self._observe(event)
        if item >= self._cluster.shape[0]:
            self._cluster = grown(self._cluster, item + 1, fill=-1)
            self._weight = grown(self._weight, item + 1)
        self._cluster[item] = world.item_cluster.get(event.item_id, -1)  # type: ignore[attr-defined]
        weights = getattr(world, "item_popularity", None)
        if weights:
            self._weight[item] = weights.get(event.item_id, 0.0)
        else:
            self._weight[item] += 1.0
        if new_session:
            self._session_cluster[event.user_id] = int(self._cluster[item])
            self._session_items[event.user_id] = []
        self._session_items[event.user_id].append(event.item_id)
        self._last_ms[event.user_id] = event.timestamp_ms

    def _is_new_session(self, user_id: str, now_ms: int | None) -> bool:
        last = self._last_ms.get(user_id)
        if last is None:
            return True
        return now_ms is not None and now_ms - last > self.session_gap_s * 1000

    def _scores(self, user_id: str, n: int, now_ms: int | None) -> np.ndarray:
        world = self.world
        cluster, weight = self._cluster[:n], self._weight[:n]
        known = cluster >= 0
        if self._is_new_session(user_id, now_ms):
            taste = world.user_taste.get(user_id)  # type: ignore[attr-defined]
            if taste is None:
                return np.zeros(n)
            return np.where(known, taste[np.maximum(cluster, 0)], 0.0) * weight
        draw = 1.0 - self.follow_chain_p - self.noise_p
        same = cluster == self._session_cluster[user_id]
        scores = draw * np.where(same, weight, 0.0) + self.noise_p / max(n, 1)
        session = self._session_items[user_id]
        chain_position = getattr(world, "chain_position", None)
        position = chain_position(session) if chain_position is not None else session[-1]
        successor = world.successor.get(position)  # type: ignore[attr-defined]
        index = self.vocab.get(successor) if successor is not None else None
        if index is not None and index < n:
            scores[index] += self.follow_chain_p
        return scores
