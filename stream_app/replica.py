"""The stream worker's CF scoring, replayed offline one event at a time (``StreamReplica``).

Why: the live online HitRate@10 a worker measures differs from the offline prequential one for
two separate reasons, and this separates them. ``StreamReplica`` runs *the same pure functions*
the worker runs (``stream_app.topology``: user-side deltas, item rows, neighbour and successor
lists, ``score_user``) behind the evaluator's ``learn_one`` / ``rank`` verbs, with every event
applied before the next is scored. Its prequential HitRate@10 against ``OnlineRecommender``'s is
the *model* gap (what the stream's candidate-list form of the blend costs); the live number
against the replica's is the *streaming* gap (micro-batches, the item side's lag, partitions).
``bench/e2e.py`` reports all three on the same events.

The session model is not part of the replica (the worker blends it in only when one is serving).
"""

from __future__ import annotations

from models.events import Interaction, event_weight
from models.online.popularity import DecayedPopularity
from stream_app.live_path import merge_history
from stream_app.settings import Settings
from stream_app.topology import (
    ListIndex,
    apply_delta,
    deltas_by_item,
    published_lists,
    score_user,
    transitions,
    user_side_batch,
)


class StreamReplica:
    """Offline replay of the worker's scoring; constants default to the worker's own, and
    history length, popularity half-life and trending depth to ``settings`` (its defaults).

    Examples
    --------
    >>> rep = StreamReplica()
    >>> t = 1_700_000_000_000
    >>> for n, (u, i) in enumerate([("a", "x"), ("a", "y"), ("b", "x")]):
    ...     rep.learn_one(Interaction(u, i, "view", t + n))
    >>> rep.rank("b", k=2)
    ['y']
    """

    def __init__(
        self,
        *,
        window: int | None = None,
        max_pairs: int | None = None,
        neighbors_m: int | None = None,
        max_successors: int | None = None,
        settings: Settings | None = None,
    ) -> None:
        from stream_app import agents  # the worker's constants, not copies of them

        settings = settings or Settings()
        self.window = window or agents.PAIR_WINDOW
        self.max_pairs = max_pairs or agents.MAX_ROW_PAIRS
        self.neighbors_m = neighbors_m or agents.NEIGHBORS_M
        self.max_successors = max_successors or agents.MAX_SUCCESSORS
        self.history_len = settings.history_len
        # the trending candidates the worker fetches (OnlineScorer.candidates_needed)
        self.trending_k = settings.top_n + settings.history_len
        self.histories: dict[str, list[str]] = {}
        self.rows: dict[str, dict] = {}
        self.norms: dict[str, float] = {}
        self.neighbors: dict[str, list[tuple[str, float]]] = {}
        self.successors: dict[str, list[tuple[str, float]]] = {}
        self.popularity = DecayedPopularity(settings.popularity_half_life_s)
        self._now_ms = 0
        self.index = ListIndex()

    def learn_one(self, event: Interaction) -> None:
        history = self.histories.get(event.user_id, [])
        weight = event_weight(event)
        learned = user_side_batch(history, [(event.item_id, weight)], window=self.window)
        moves = transitions(history, [event.item_id])
        touched = {}
        for item, delta in deltas_by_item(learned, moves).items():
            row = apply_delta(self.rows.get(item), delta, self.max_pairs, self.max_successors)
            touched[item] = row
            self.norms[item] = float(row.get("n", 0.0))
        self.rows.update(touched)
        lists, nexts = published_lists(touched, self.norms, self.neighbors_m, self.max_successors)
        self.neighbors.update(lists)
        self.successors.update(nexts)
        self.histories[event.user_id] = merge_history(history, [event.item_id], self.history_len)
        self.popularity.learn_one(event.item_id, weight, event.timestamp_ms)
        self._now_ms = max(self._now_ms, event.timestamp_ms)

    def rank(self, user_id: str, k: int = 10, now_ms: int | None = None) -> list[str]:
        history = self.histories.get(user_id, [])
        trending = self.popularity.top(self.trending_k, now_ms or self._now_ms)
        recs = score_user(
            history, self.neighbors, trending, k, successors=self.successors, index=self.index
        )
        return [r.item_id for r in recs]
