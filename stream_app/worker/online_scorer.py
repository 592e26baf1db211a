"""``OnlineScorer``: the worker's ``Scorer``, the stream model fed from Redis.

Per batch it reads the published neighbour and successor lists the scoring needs, lets each
user-side partition's River ranker learn the batch's events (``learn_batch``), ranks every
affected user with :class:`models.online.stream.StreamScorer` and blends in the serving session
model. The rankers' states are checkpointed with the counted marks (``checkpoint``), so the
events counted and the events learned are one set: see "Learned state" in docs/stream.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from models.events import Interaction
from models.online.stream import StreamScorer
from models.online.stream.content import ItemContent
from models.online.stream.partitions import key_partition
from models.online.stream.scoring import ScoringParams
from models.online.stream.session import SESSION_SLOTS, blend_sessions
from stream_app.cache.base import CacheUnavailable, RecCache, Recommendation
from stream_app.cache.keys import CacheKeys

log = logging.getLogger(__name__)

CF_VERSION = "stream-v3"
#: Trending items fetched per batch: the popularity feature of every candidate among them.
TRENDING_DEPTH = 220


ItemLists = dict[str, list[tuple[str, float]]]


class BatchLists:
    """The neighbour and successor lists one batch has read, by owner (absent ones too), so
    the batch's learning and scoring ask Redis once for each list.

    >>> from stream_app.cache import MemoryCache
    >>> cache = MemoryCache()
    >>> cache.publish_neighbors({"a": [("x", 0.9)]}, {"a": 1.0, "x": 1.0})
    >>> lists = BatchLists()
    >>> lists.neighbors(cache, ["a", "b"])
    {'a': [('x', 0.9)]}
    >>> cache.publish_neighbors({"a": [("y", 0.5)]}, {"a": 1.0, "y": 1.0})
    >>> lists.neighbors(cache, ["a"])   # read once per batch
    {'a': [('x', 0.9)]}
    """

    def __init__(self) -> None:
        self._neighbors: ItemLists = {}
        self._successors: ItemLists = {}
        self._asked: tuple[set[str], set[str]] = (set(), set())

    def neighbors(self, cache: RecCache, owners: Sequence[str]) -> ItemLists:
        return self._read(cache.get_neighbors, self._neighbors, self._asked[0], owners)

    def successors(self, cache: RecCache, owners: Sequence[str]) -> ItemLists:
        return self._read(cache.get_successors, self._successors, self._asked[1], owners)

    @staticmethod
    def _read(
        get: Callable[[Sequence[str]], Mapping[str, list[tuple[str, float]]]],
        read: ItemLists,
        asked: set[str],
        owners: Sequence[str],
    ) -> ItemLists:
        missing = [owner for owner in owners if owner not in asked]
        if missing:
            read.update(get(missing))
            asked.update(missing)
        return {owner: read[owner] for owner in owners if owner in read}


class OnlineScorer:
    """Scores a batch's users from the published lists with the partitions' rankers.

    ``slot`` is anything with ``current()`` and ``version`` (a ``ModelSlot``); its model must
    offer ``recommend(prefixes, k, exclude)``. ``session_len`` recent items form the session
    prefix; ``session_slots`` of the ``n`` places go to the session model.

    Examples
    --------
    >>> from stream_app.cache import MemoryCache
    >>> cache = MemoryCache()
    >>> cache.publish_neighbors({"a": [("x", 0.9)]}, {"a": 1.0, "x": 1.0})
    >>> scorer = OnlineScorer(cache, partitions=1)
    >>> recs = scorer.recommend_batch({"u": ["a"]}, [("t", 2.0)], n=2)
    >>> [(r.item_id, r.reason) for r in recs["u"]], sorted(scorer.versions)
    ([('x', 'because you viewed a'), ('t', 'trending now')], ['cf', 'ranker'])
    """

    def __init__(
        self,
        cache: RecCache,
        slot: Any = None,
        *,
        partitions: int = 4,
        keys: CacheKeys | None = None,
        model: StreamScorer | None = None,
        session_len: int = 10,
        session_slots: int = SESSION_SLOTS,
        history_len: int = 200,
        content: ItemContent | None = None,
        params: ScoringParams | None = None,
    ) -> None:
        self.cache = cache
        self.slot = slot
        self.keys = keys or CacheKeys()
        self.model = model or StreamScorer(partitions=partitions, content=content, params=params)
        self.session_len = session_len
        self.session_slots = session_slots
        #: the worker's ``HISTORY_LEN``: how the batch's events extend a learning history
        self.history_len = history_len
        self._versions: dict[str, str] = {"cf": CF_VERSION}
        #: partition -> update count of its state as last read from or written to the cache
        self._persisted: dict[int, int] = {}
        #: partitions whose rankers learned since their last checkpoint
        self._dirty: set[int] = set()
        #: user -> partition of her events in the current batch
        self._partition: dict[str, int] = {}
        #: the trending list of the previous batch: the popularity the batch's events saw
        self._trending_before: Sequence[tuple[str, float]] = ()
        #: the lists read for the current batch: its learning reads them, its scoring (and
        #: the sequential HitRate's) reuses them instead of asking Redis again
        self._batch_lists: BatchLists | None = None
        #: the current batch's users were scored: the next scoring is another batch's
        self._batch_scored = False

    @property
    def versions(self) -> Mapping[str, str]:
        """Versions used by the last batch (the session model's only when it served it)."""
        return dict(self._versions)

    def candidates_needed(self, n: int, history_len: int) -> int:
        return max(n + history_len, TRENDING_DEPTH)

    def partition_of(self, key: str) -> int:
        """A user's partition: her events' in this batch, else the producer's key rule (a
        sequential-HitRate key ``user\\x00position`` counts as its user)."""
        found = self._partition.get(key)
        if found is not None:
            return found
        user = key.rsplit("\x00", 1)[0] if "\x00" in key else key
        found = self._partition.get(user)
        return found if found is not None else key_partition(user, self.model.partitions)

    def _lists(
        self, histories: Sequence[Sequence[str]], fresh: bool = False
    ) -> tuple[ItemLists, ItemLists]:
        """The neighbour and successor lists scoring ``histories`` reads: from the batch's
        lists already read (:class:`BatchLists`), the rest from the cache; all from the cache
        when ``fresh``."""
        near, nexts = self.model.list_owners(histories)
        lists = self._batch_lists
        if lists is None or fresh:
            return self.cache.get_neighbors(near), self.cache.get_successors(nexts)
        return lists.neighbors(self.cache, near), lists.successors(self.cache, nexts)

    def restore(self, partitions: Sequence[int]) -> None:
        """Load each partition's checkpoint that another worker (or a previous life of this
        one) wrote since this one last read or wrote it: after a restart or a rebalance the
        learner continues from there, never from zero."""
        wanted = sorted(set(partitions))
        stored = self.cache.read_state([self.keys.ranker(p) for p in wanted])
        for p in wanted:
            raw = stored.get(self.keys.ranker(p))
            if raw is None:
                continue
            try:
                ranker = self.model.load_ranker(raw)
            except ValueError as exc:
                log.warning("ranker state of partition %d refused, kept in memory: %s", p, exc)
                continue
            if self._persisted.get(p) != ranker.n_updates or p not in self.model.rankers:
                if p in self.model.rankers:
                    log.info("partition %d: ranker reloaded at %d updates", p, ranker.n_updates)
                self.model.rankers[p] = ranker
                self._persisted[p] = ranker.n_updates
                self._dirty.discard(p)

    def learn_batch(
        self,
        events: Sequence[Interaction],
        before: Mapping[str, Sequence[str]],
        partitions: Sequence[int],
    ) -> None:
        """Every event of the batch teaches its partition's ranker, against its user's
        history just before it (``before`` plus her earlier items of the batch), the lists as
        published and the trending list of the previous batch."""
        self._partition = {e.user_id: p for e, p in zip(events, partitions, strict=True)}
        self._batch_lists, self._batch_scored = BatchLists(), False
        if not events:
            return
        rows = [
            (e.user_id, e.item_id, e.timestamp_ms, p)
            for e, p in zip(events, partitions, strict=True)
        ]
        priors, taught = self.model.event_priors(before, rows, self.history_len)
        try:
            self.restore(partitions)
            # only the events that teach need their history's lists
            neighbors, successors = self._lists([priors[at] for at in taught])
        except CacheUnavailable as exc:
            log.warning("ranker did not learn a batch of %d events: %s", len(events), exc)
            return
        self.model.learn(
            before, rows, neighbors, successors, self._trending_before, priors=priors, taught=taught
        )
        self._dirty.update(partitions)

    def checkpoint(self) -> dict[str, bytes]:
        """The states of the rankers that learned since their last checkpoint (cache key ->
        JSON), to be written with the batch's counted marks."""
        return {self.keys.ranker(p): self.model.ranker(p).to_json() for p in sorted(self._dirty)}

    def checkpointed(self) -> None:
        """The last :meth:`checkpoint` is durable."""
        for p in self._dirty:
            self._persisted[p] = self.model.ranker(p).n_updates
        self._dirty.clear()

    def rewrite_state(self, partitions: Sequence[int]) -> None:
        """Redis lost the checkpoints: the next :meth:`checkpoint` writes the rankers of
        ``partitions`` that live in this process (a learner must not start again from the
        fixed blend while its state is alive here)."""
        self._dirty.update(p for p in partitions if p in self.model.rankers)

    def recommend_batch(
        self,
        histories: Mapping[str, Sequence[str]],
        trending: Sequence[tuple[str, float]],
        n: int,
        excluded: Mapping[str, Sequence[str]] | None = None,
        *,
        between_batches: bool = False,
    ) -> dict[str, list[Recommendation]]:
        """Each user's top-``n``: none of her history, none of her ``excluded`` (what she said
        no to), in the CF list, its trending fill and the session model's items alike.
        ``between_batches``: users of no batch (the refresh after a swap), scored from lists
        read now, leaving the batch's lists and the trending list the next batch learns
        against as they were."""
        users = list(histories)
        lists = [histories[u] for u in users]
        rows = [excluded.get(u, ()) for u in users] if excluded else None
        # not the sequential HitRate's keys (``user\x00position``), not a refresh
        batch_users = not between_batches and not any("\x00" in u for u in users)
        if batch_users and self._batch_scored:
            self._batch_lists = None  # no learn_batch began this batch: read the lists anew
        self._batch_scored = self._batch_scored or batch_users
        try:
            neighbors, successors = self._lists(lists, fresh=between_batches)
        except CacheUnavailable as exc:
            log.warning("neighbour lists unavailable, trending only: %s", exc)
            neighbors, successors = {}, {}
        cands = self.model.candidates(lists, neighbors, successors, trending, rows)
        parts = [self.partition_of(u) for u in users]
        ranked = self.model.recommend_from(cands, lists, parts, trending, n, rows)
        out = dict(zip(users, ranked, strict=True))
        versions = {"cf": CF_VERSION, **self.model.versions(parts)}
        if batch_users:
            self._trending_before = trending
        unseen = lists if rows is None else [[*h, *x] for h, x in zip(lists, rows, strict=True)]
        self._blend_session(out, users, lists, unseen, n, versions)
        self._versions = versions
        return out

    def _blend_session(
        self,
        out: dict[str, list[Recommendation]],
        users: Sequence[str],
        lists: Sequence[Sequence[str]],
        unseen: Sequence[Sequence[str]],
        n: int,
        versions: dict[str, str],
    ) -> None:
        """Blend the serving session model's items (none of ``unseen``: each user's history
        and exclusions) into ``out``, naming its version in ``versions``."""
        model = self.slot.current() if self.slot is not None else None
        if model is None or not users:
            return
        try:
            blended = blend_sessions(
                model,
                lists,
                unseen,
                [out[user] for user in users],
                n,
                self.session_len,
                self.session_slots,
            )
        except Exception as exc:  # a model bug must not cost the CF recommendations
            log.warning("session model failed on a batch, CF only: %r", exc)
            return
        out.update(zip(users, blended, strict=True))
        version = getattr(model, "version", None) or self.slot.version
        versions["session"] = str(version)


__all__ = ["CF_VERSION", "BatchLists", "OnlineScorer"]
