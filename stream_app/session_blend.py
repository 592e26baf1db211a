"""``OnlineScorer``: the worker's ``Scorer`` -- the online model's fixed blend of item-kNN and
transitions from the lists the item side published, trending for cold users, and the serving
session model blended in.

It runs inside ``LivePath.process``: in a worker thread whenever a session model serves (its
batched Keras inference must not block the event loop) or the last batch's Redis work failed,
and otherwise on the event loop unless ``Settings.batch_in_thread`` says so (its per-batch
Redis reads, an MGET of the neighbour lists of every affected user's recent items and one of the
successor lists of their last items, are sub-millisecond round trips; handing the GIL to a
thread and back cost more). The session model
is taken from the ``ModelSlot`` once per batch: a swap lands between batches, never inside one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from stream_app.cache.base import CacheUnavailable, RecCache, Recommendation
from stream_app.topology import ListIndex, blend_session, score_users

log = logging.getLogger(__name__)

CF_VERSION = "knn-markov-stream-v2"


class OnlineScorer:
    """Scores a batch's users from the neighbour lists the item side published.

    ``slot`` is anything with ``current()`` and ``version`` (a ``ModelSlot``); its model must
    offer ``recommend(prefixes, k, exclude)``. ``session_len`` recent items form the session
    prefix; ``session_slots`` of the ``n`` places go to the session model.

    Examples
    --------
    >>> from stream_app.cache import MemoryCache
    >>> cache = MemoryCache()
    >>> cache.publish_neighbors({"a": [("x", 0.9)]}, {"a": 1.0, "x": 1.0})
    >>> scorer = OnlineScorer(cache)
    >>> recs = scorer.recommend_batch({"u": ["a"]}, [("t", 2.0)], n=2)
    >>> [(r.item_id, r.reason) for r in recs["u"]], dict(scorer.versions)
    ([('x', 'because you viewed a'), ('t', 'trending now')], {'cf': 'knn-markov-stream-v2'})
    """

    def __init__(
        self,
        cache: RecCache,
        slot: Any = None,
        *,
        recent: int = 20,
        recency_decay: float = 0.9,
        session_len: int = 10,
        session_slots: int = 5,
    ) -> None:
        self.cache = cache
        self.slot = slot
        self.recent = recent
        self.recency_decay = recency_decay
        self.session_len = session_len
        self.session_slots = session_slots
        self._versions: dict[str, str] = {"cf": CF_VERSION}
        #: the published lists as arrays, converted once per list read (``score_users``)
        self.index = ListIndex()

    @property
    def versions(self) -> Mapping[str, str]:
        """Versions used by the last batch (the session model's only when it served it)."""
        return dict(self._versions)

    def candidates_needed(self, n: int, history_len: int) -> int:
        return n + history_len

    def recommend_batch(
        self,
        histories: Mapping[str, Sequence[str]],
        trending: Sequence[tuple[str, float]],
        n: int,
    ) -> dict[str, list[Recommendation]]:
        wanted = sorted({i for h in histories.values() for i in h[-self.recent :]})
        lasts = sorted({h[-1] for h in histories.values() if h})
        try:
            neighbors = self.cache.get_neighbors(wanted)
            successors = self.cache.get_successors(lasts)
        except CacheUnavailable as exc:
            log.warning("neighbour lists unavailable, trending only: %s", exc)
            neighbors, successors = {}, {}
        out = score_users(
            histories,
            neighbors,
            trending,
            n,
            successors=successors,
            recent=self.recent,
            recency_decay=self.recency_decay,
            index=self.index,
        )
        versions = {"cf": CF_VERSION}
        model = self.slot.current() if self.slot is not None else None
        if model is not None and histories:
            users = list(histories)
            prefixes = [list(histories[u][-self.session_len :]) for u in users]
            try:
                session = model.recommend(
                    prefixes, self.session_slots, exclude=[histories[u] for u in users]
                )
            except Exception as exc:  # a model bug must not cost the CF recommendations
                log.warning("session model failed on a batch, CF only: %r", exc)
            else:
                for user, items in zip(users, session, strict=True):
                    out[user] = blend_session(
                        out[user], items, histories[user], n, self.session_slots
                    )
                version = getattr(model, "version", None) or self.slot.version
                versions["session"] = str(version)
        self._versions = versions
        return out
