"""The blended online recommender: candidate sources, a River re-ranker, reasons, one verb set.

Per event (``learn_one``) the user side updates the history, the user->item index and the River
re-ranker (the event's item against sampled negatives, features taken *before* the update), and
applies the event's co-occurrence pairs to the similarity, transition and popularity statistics
(the item side), in process. This is the dense offline reference (``dense_reference`` in
``streamrec evaluate``); the stream worker runs ``models.online.stream``. Scoring builds one
feature row per source over every known item and the re-ranker combines them: the rows, their
scaling, ties and reasons are in docs/online-models.md, "Scoring".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.events import Interaction, event_weight
from models.online.content import ContentSimilarity, item_attributes
from models.online.cooccurrence import ItemSimilarity, pair_weights
from models.online.history import UserHistory
from models.online.markov import Transitions
from models.online.popularity import DecayedPopularity
from models.online.ranking import top_k
from models.online.reranker import FMReranker, LinearReranker
from models.online.usercf import UserNeighbors
from models.online.vocab import Vocabulary

#: Source scores, each scaled to max 1 per request, and ``markov_p``: the raw transition
#: probability, left unscaled so the re-ranker can tell a confident transition from a weak one.
#: Then the session-aware features (a request more than ``session_gap_s`` after the user's last
#: event opens a new session; without a request time it continues the current one):
#: ``session_pop`` is popularity inside the current session's catalog attributes (content
#: similarity to the session's items x decayed popularity, 0 on a new session); ``taste_pop`` is
#: the same with the user's whole history, on a new session only; ``markov_new`` and ``knn_new``
#: repeat ``markov_p`` and ``knn`` on a new session only, so the linear re-ranker can weigh a
#: transition or a neighbour across a session boundary differently from one inside a session;
#: ``markov_skip`` sums the transition probabilities from the session's earlier items (not the
#: last), ``skip_decay`` per step back, plus the transitions from the session's inferred *path
#: position* when that is not the last item (:meth:`Transitions.path_position`): after a detour a
#: session often resumes where it was. (One row rather than two: with two, each learned a smaller
#: weight and MRR@10 on the 30k synthetic stream was lower, 0.479 against 0.492.)
FEATURES: tuple[str, ...] = (
    "knn",
    "markov",
    "usercf",
    "content",
    "popularity",
    "markov_p",
    "session_pop",
    "taste_pop",
    "markov_new",
    "knn_new",
    "markov_skip",
)

#: Fixed blend used until the re-ranker has learned ``min_trained`` events (and by
#: ``reranker=None``); tuned on the synthetic stream, see docs/online-models.md.
DEFAULT_BLEND: dict[str, float] = {
    "knn": 1.0,
    "markov": 0.3,
    "usercf": 0.2,
    "content": 0.1,
    "popularity": 0.15,
    "markov_p": 0.0,
    "session_pop": 0.0,
    "taste_pop": 0.0,
    "markov_new": 0.0,
    "knn_new": 0.0,
    "markov_skip": 0.0,
}

_VERBS = {
    "view": "viewed",
    "click": "clicked",
    "add_to_cart": "added to your cart",
    "purchase": "bought",
    "rating": "rated",
}


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One recommended item with its score, a human-readable reason and its main source."""

    item_id: str
    score: float
    reason: str
    source: str


class OnlineRecommender:
    """Online item-based CF blend with a River re-ranker; learns from every event.

    Parameters (the constructor is the configuration)
    ----------
    window
        Recent items of the user an event co-occurs with.
    recent
        Recent items whose neighbours are scored, weighted ``recency_decay ** age``.
    max_neighbors, max_successors
        Per-item caps of the similarity and transition rows (the memory bound).
    cooc_half_life_s, popularity_half_life_s
        Time decay of co-occurrence and popularity (``math.inf``: none).
    user_cf, content
        Enable the user-based and catalog sources.
    reranker
        ``"logreg"`` (default), ``"fm"`` or ``None`` (fixed blend).
    n_negatives, train_every
        Negatives per positive (half from the current top 50, half uniform); the re-ranker
        learns from every ``train_every``-th event (its few weights converge fast).

    Examples
    --------
    >>> rec = OnlineRecommender(seed=1)
    >>> t = 1_700_000_000_000
    >>> for n, (u, i) in enumerate([("a", "x"), ("a", "y"), ("b", "x"), ("c", "z")]):
    ...     rec.learn_one(Interaction(u, i, "view", t + n))
    >>> [(r.item_id, r.reason) for r in rec.recommend("b", k=2)]
    [('y', 'because you viewed x'), ('z', 'trending now')]
    """

    def __init__(
        self,
        *,
        window: int = 10,
        distance_decay: float = 1.0,
        recent: int = 20,
        recency_decay: float = 0.9,
        max_neighbors: int = 100,
        max_successors: int = 50,
        cooc_half_life_s: float = math.inf,
        popularity_half_life_s: float = 7 * 86_400.0,
        history_len: int = 200,
        max_consumed: int = 5_000,
        session_gap_s: float = 1_800.0,
        user_cf: bool = False,
        users_per_item: int = 20,
        content: bool = True,
        session_popularity: bool = False,
        skip_steps: int = 3,
        skip_decay: float = 0.5,
        resume_window: int = 10,
        blend: Mapping[str, float] | None = None,
        reranker: str | None = "logreg",
        n_negatives: int = 4,
        hard_pool: int = 50,
        learning_rate: float = 0.05,
        min_trained: int = 1_000,
        train_every: int = 4,
        catalog: Mapping[str, Mapping[str, Any]] | None = None,
        seed: int = 0,
    ) -> None:
        self.window = window
        self.distance_decay = distance_decay
        self.recent = recent
        self.recency_decay = recency_decay
        self.max_neighbors = max_neighbors
        self.max_successors = max_successors
        self.cooc_half_life_s = cooc_half_life_s
        self.popularity_half_life_s = popularity_half_life_s
        self.history_len = history_len
        self.max_consumed = max_consumed
        self.session_gap_s = session_gap_s
        self.user_cf = user_cf
        self.users_per_item = users_per_item
        self.content = content
        self.session_popularity = session_popularity
        self.skip_steps = skip_steps
        self.skip_decay = skip_decay
        self.resume_window = resume_window
        self.blend = dict(DEFAULT_BLEND if blend is None else blend)
        self.reranker = reranker
        self.n_negatives = n_negatives
        self.hard_pool = hard_pool
        self.learning_rate = learning_rate
        self.min_trained = min_trained
        self.train_every = train_every
        self.catalog = catalog
        self.seed = seed

        self.vocab = Vocabulary()
        self.history = UserHistory(history_len, max_consumed, session_gap_s)
        self.similarity = ItemSimilarity(max_neighbors, cooc_half_life_s, self.vocab)
        self.transitions = Transitions(max_successors)
        self.popularity = DecayedPopularity(popularity_half_life_s, self.vocab)
        self.counts = DecayedPopularity(math.inf, self.vocab)  # tie-break: global popularity
        self.user_neighbors = UserNeighbors(self.history, users_per_item) if user_cf else None
        self.content_sim = ContentSimilarity() if content else None
        self.attributes: dict[str, list[str]] = {}
        self.ranker: LinearReranker | FMReranker | None = None
        if reranker == "logreg":
            self.ranker = LinearReranker(FEATURES, learning_rate)
        elif reranker == "fm":
            self.ranker = FMReranker(FEATURES, learning_rate, seed=seed)
        elif reranker is not None:
            raise ValueError(f"reranker must be 'logreg', 'fm' or None, not {reranker!r}")
        self._blend_vector = np.array([self.blend.get(f, 0.0) for f in FEATURES])
        self._rng = np.random.default_rng(seed)
        self._version = 0
        self._n_seen = 0
        self._cache: tuple[str, int, bool, np.ndarray] | None = None

    # ----------------------------------------------------------------- catalog
    def set_item_attributes(self, item_id: str, record: Mapping[str, Any]) -> None:
        """Catalog update (the items topic): attributes for content similarity."""
        self.attributes[item_id] = item_attributes(record)
        index = self.vocab.get(item_id)
        if index is not None and self.content_sim is not None:
            self.content_sim.set_item(index, self.attributes[item_id])

    def _intern(self, item_id: str) -> int:
        known = len(self.vocab)
        index = self.vocab.add(item_id)
        if index == known and self.content_sim is not None:
            tokens = self.attributes.get(item_id)
            if tokens is None and self.catalog is not None and item_id in self.catalog:
                tokens = item_attributes(self.catalog[item_id])
            self.content_sim.set_item(index, tokens or [])
        return index

    # ----------------------------------------------------------------- learning
    def learn_one(self, event: Interaction) -> None:
        """Learn one event: user side, then item side, in process (no string round trip)."""
        item, weight, pairs, previous = self._user_side(event)
        ts = event.timestamp_ms
        self._apply_norm(item, weight * weight, ts)
        self.similarity.apply_pairs(item, pairs, ts)
        if previous is not None:
            self.transitions.learn_one(previous, item, 1.0, ts)
        self._version += 1

    def _user_side(
        self, event: Interaction
    ) -> tuple[int, float, list[tuple[int, float]], int | None]:
        weight = event_weight(event)
        item = self._intern(event.item_id)
        state = self.history.get(event.user_id)
        self._n_seen += 1
        if self.ranker is not None and state is not None and self._n_seen % self.train_every == 0:
            self._train_reranker(event.user_id, item, event.timestamp_ms)
        recent: list[tuple[int, float]] = []
        previous: int | None = None
        if state is not None and state.items:
            recent = list(
                zip(state.items[-self.window :], state.weights[-self.window :], strict=True)
            )
            previous = state.items[-1] if state.items[-1] != item else None
        pairs = pair_weights(
            recent, item, weight, window=self.window, distance_decay=self.distance_decay
        )
        self.history.learn_one(event.user_id, item, weight, event.event_type, event.timestamp_ms)
        if self.user_neighbors is not None:
            self.user_neighbors.learn_one(event.user_id, item)
        self._version += 1
        return item, weight, pairs, previous

    def _apply_norm(self, item: int, squared_weight: float, timestamp_ms: int) -> None:
        self.similarity.apply_indices(item, item, squared_weight, timestamp_ms)
        self.popularity.learn_index(item, math.sqrt(squared_weight), timestamp_ms)
        self.counts.learn_index(item, 1.0, timestamp_ms)

    def _train_reranker(self, user_id: str, item: int, now_ms: int) -> None:
        assert self.ranker is not None
        features = self._features(user_id, now_ms)
        n = features.shape[1]
        if item >= n:
            return  # a brand-new item has no features yet
        # Half hard negatives (the current top candidates), half uniform over the catalog: hard
        # ones alone teach the model that a high neighbour score means "not chosen".
        combined = self._combine(features, user_id)
        combined[self.history.consumed(user_id)] = -np.inf
        combined[item] = -np.inf
        pool = min(self.hard_pool, n - 1)
        hard = np.argpartition(-combined, pool)[:pool] if pool > 0 else np.empty(0, np.int64)
        hard = hard[np.isfinite(combined[hard])]
        n_hard = min(self.n_negatives // 2, hard.shape[0])
        picked = hard[self._rng.integers(0, hard.shape[0], size=n_hard)] if n_hard else hard[:0]
        uniform = self._rng.integers(0, n, size=self.n_negatives - n_hard)
        negatives = np.concatenate([picked, uniform[uniform != item]])
        names = [self.vocab.items[i] for i in (item, *negatives)]
        self.ranker.learn(features[:, item], features[:, negatives].T, user_id=user_id, items=names)

    # ----------------------------------------------------------------- scoring
    def is_new_session(self, user_id: str, now_ms: int | None) -> bool:
        """Would a request at ``now_ms`` open a new session (no request time: it would not)?"""
        state = self.history.get(user_id)
        if state is None or not state.items:
            return True
        return now_ms is not None and now_ms - state.last_ms > self.session_gap_s * 1000

    def _features(self, user_id: str, now_ms: int | None = None) -> np.ndarray:
        new = self.is_new_session(user_id, now_ms)
        cache = self._cache
        if (
            cache is not None
            and cache[0] == user_id
            and cache[1] == self._version
            and cache[2] == new
        ):
            return cache[3]
        n = len(self.vocab)
        out = np.zeros((len(FEATURES), n))
        state = self.history.get(user_id)
        popularity = self.popularity.vector(n)
        if state is not None and state.items:
            items = np.asarray(state.items[-self.recent :], dtype=np.int64)
            weights = np.asarray(state.weights[-self.recent :])
            weights = weights * self.recency_decay ** np.arange(items.shape[0])[::-1]
            out[0] = self.similarity.scores(items, weights, n)
            out[1] = self.transitions.probabilities(int(items[-1]), n)
            if self.user_neighbors is not None:
                out[2] = self.user_neighbors.scores(user_id, n)
            if self.content_sim is not None:
                out[3] = self.content_sim.scores(items, weights, n)
            if self.content_sim is not None and self.session_popularity:
                # One profile per request: the session's items, or the whole kept history.
                profile = state.items if new else state.items[state.session_start :]
                profile_items = np.asarray(profile, dtype=np.int64)
                out[7 if new else 6] = popularity * self.content_sim.scores(
                    profile_items, np.ones(profile_items.shape[0]), n
                )
            if not new and self.skip_steps > 0:
                earlier = state.items[state.session_start : -1][-self.skip_steps :][::-1]
                scales = [self.skip_decay**age for age in range(len(earlier))]
                session = state.items[state.session_start :][-self.resume_window :]
                position = self.transitions.path_position(session)
                if position != session[-1]:
                    earlier.append(position)
                    scales.append(1.0)
                out[10] = self.transitions.mixture(earlier, scales, n)
        out[4] = np.log1p(popularity / max(float(popularity.mean()), 1e-12))
        out[5] = out[1]
        if new:
            out[8] = out[5]
        # Scaled to max 1 per request: the sources (rows 0-4) and the session popularities.
        for rows in (out[:5], out[6:8]) if self.session_popularity else (out[:5],):
            peaks = rows.max(axis=1, keepdims=True)
            np.divide(rows, peaks, out=rows, where=peaks > 0)
        if new:
            out[9] = out[0]
        self._cache = (user_id, self._version, new, out)
        return out

    def _combine(self, features: np.ndarray, user_id: str) -> np.ndarray:
        ranker = self.ranker
        if isinstance(ranker, LinearReranker) and ranker.n_learned >= self.min_trained:
            return ranker.score(features)
        return self._blend_vector @ features

    def _ranked(
        self, user_id: str, k: int, now_ms: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        features = self._features(user_id, now_ms)
        scores = self._combine(features, user_id)
        excluded = self.history.consumed(user_id)
        tiebreak = self.counts.vector(features.shape[1])
        if isinstance(self.ranker, FMReranker) and self.ranker.n_learned >= self.min_trained:
            short = top_k(scores, max(5 * k, 50), excluded, tiebreak)
            names = [self.vocab.items[i] for i in short]
            fm = self.ranker.score(features[:, short], user_id=user_id, items=names)
            order = short[np.lexsort((-tiebreak[short], -fm))][:k]
            return order, fm, features
        return top_k(scores, k, excluded, tiebreak), scores, features

    def rank(self, user_id: str, k: int = 10, now_ms: int | None = None) -> list[str]:
        """Top-``k`` item ids for the user, best first (no reasons: the fast path)."""
        order, _, _ = self._ranked(user_id, k, now_ms)
        return [self.vocab.items[i] for i in order]

    def predict_one(self, user_id: str, item_id: str) -> float:
        """Score of one item for the user (River's verb), on the blend's scale."""
        index = self.vocab.get(item_id)
        if index is None:
            return 0.0
        features = self._features(user_id)
        return float(self._combine(features[:, index : index + 1], user_id)[0])

    def recommend(
        self, user_id: str, k: int = 10, now_ms: int | None = None
    ) -> list[Recommendation]:
        """Top-``k`` with a score, a reason and the source that contributed most."""
        order, _, features = self._ranked(user_id, k, now_ms)
        if order.shape[0] == 0:
            return []
        ranker = self.ranker
        weights = (
            ranker.weight_vector()
            if isinstance(ranker, LinearReranker) and ranker.n_learned >= self.min_trained
            else self._blend_vector
        )
        contributions = weights[:, None] * features[:, order]
        totals = contributions.sum(axis=0)
        state = self.history.get(user_id)
        out = []
        for j, index in enumerate(order):
            source = FEATURES[int(np.argmax(contributions[:, j]))]
            if contributions[:, j].max() <= 0:
                source = "popularity"
            out.append(
                Recommendation(
                    item_id=self.vocab.items[index],
                    score=float(totals[j]),
                    reason=self._reason(source, int(index), state),
                    source=source,
                )
            )
        return out

    def _reason(self, source: str, index: int, state: Any) -> str:
        if source == "usercf":
            return "similar users liked"
        if source == "popularity" or state is None or not state.items:
            return "trending now"
        if source == "session_pop":
            return "popular in what you are browsing"
        if source == "taste_pop":
            return "popular in what you like"
        if source in ("markov", "markov_new", "markov_p"):
            last = state.items[-1]
            return f"often next after {self._title(last)}"
        if source == "markov_skip" and len(state.items) >= 2:
            # An earlier item of the session; the one before the last is the usual case.
            return f"often after {self._title(state.items[-2])}"
        recent = state.items[-self.recent :]
        if source == "content":
            return f"similar to {self._title(recent[-1])}"
        sims = [self.similarity.rows.get(j, index) for j in recent]
        best = int(np.argmax(sims)) if sims else len(recent) - 1
        verb = _VERBS.get(state.event_types[-len(recent) + best], "viewed")
        return f"because you {verb} {self._title(recent[best])}"

    def _title(self, index: int) -> str:
        item_id = self.vocab.items[index]
        if self.catalog is not None:
            title = self.catalog.get(item_id, {}).get("title")
            if title:
                return str(title)
        return item_id
