"""The stream model: the one scoring path of the worker and of ``streamrec evaluate``.

``StreamScorer`` is the ranking stage given the published lists: candidates and features for a
batch of users (:mod:`models.online.stream.scoring`), one River ranker per user-side partition
(:class:`StreamRanker`) that learns from every event, and the ranked top-N with reasons. The
worker feeds it lists read from Redis, a micro-batch at a time; ``StreamModel`` feeds it lists
it keeps in process, one event at a time, behind the evaluator's ``learn_one`` / ``rank``.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from models.catalog import ItemRecord
from models.events import DEFAULT_FEEDBACK, Feedback, Interaction
from models.online.popularity import DecayedPopularity
from models.online.stream.arrays import ListIndex
from models.online.stream.content import ItemContent
from models.online.stream.deltas import (
    MAX_ROW_PAIRS,
    MAX_SUCCESSORS,
    NEIGHBORS_M,
    PAIR_WINDOW,
    apply_delta,
    deltas_by_item,
    merge_history,
    published_lists,
    transitions,
    user_side_batch,
)
from models.online.stream.partitions import key_partition
from models.online.stream.ranker import LEARNING_RATE, OPTIMIZER, StreamRanker
from models.online.stream.reasons import act_of, merge_acts, with_acts
from models.online.stream.scoring import (
    Candidates,
    Recommendation,
    ScoringParams,
    candidates,
    recommendations,
    training_pairs,
)

Lists = Mapping[str, Sequence[tuple[str, float]]]


def event_seed(user_id: str, item_id: str, timestamp_ms: int) -> int:
    """The seed of an event's negative picks: the same event always teaches the same pairs.

    >>> event_seed("u", "i", 1) == event_seed("u", "i", 1) != event_seed("u", "i", 2)
    True
    """
    return zlib.crc32(f"{user_id}\x1f{item_id}\x1f{timestamp_ms}".encode())


class StreamScorer:
    """The ranking stage over published lists, with one learner per partition.

    Examples
    --------
    >>> scorer = StreamScorer(partitions=1)
    >>> nb, nexts, trending = {"a": [("x", 0.9)]}, {}, [("t", 1.0)]
    >>> _ = scorer.learn({"u": ["a"]}, [("u", "x", 5, 0)], nb, nexts, trending)
    >>> scorer.rankers[0].n_updates
    1
    >>> [r.item_id for r in scorer.recommend({"v": ["a"]}, nb, nexts, trending, 2)["v"]]
    ['x', 't']
    """

    def __init__(
        self,
        *,
        params: ScoringParams | None = None,
        partitions: int = 1,
        learning_rate: float = LEARNING_RATE,
        optimizer: str = OPTIMIZER,
        min_trained: int = 1_000,
        n_negatives: int = 2,
        hard_pool: int = 50,
        outside_positives: bool = False,
        content: ItemContent | None = None,
    ) -> None:
        self.params = params or ScoringParams()
        self.partitions = partitions
        self.learning_rate = learning_rate
        self.optimizer = optimizer
        self.min_trained = min_trained
        self.n_negatives = n_negatives
        self.hard_pool = hard_pool
        #: whether an event whose item is no candidate teaches (its pairs: its popularity
        #: alone against the candidates' features)
        self.outside_positives = outside_positives
        #: partition -> its learner (created on first use)
        self.rankers: dict[int, StreamRanker] = {}
        #: the published lists as arrays, converted once per list object
        self.index = ListIndex()
        #: the catalog's categories and the cold pool (empty: no content feature, no cold
        #: candidates); the worker's catalog follower and ``StreamModel(catalog=)`` fill it
        self.content = content if content is not None else ItemContent()

    def ranker(self, partition: int) -> StreamRanker:
        found = self.rankers.get(partition)
        if found is None:
            found = self.rankers[partition] = StreamRanker(
                learning_rate=self.learning_rate,
                min_trained=self.min_trained,
                optimizer=self.optimizer,
            )
        return found

    def load_ranker(self, raw: bytes | str) -> StreamRanker:
        """A ranker from its checkpoint (``StreamRanker.to_json``), with this scorer's learning
        settings; ValueError if the state is not one of this learner's."""
        return StreamRanker.from_json(
            raw,
            learning_rate=self.learning_rate,
            min_trained=self.min_trained,
            optimizer=self.optimizer,
        )

    def partition_of(self, user_id: str) -> int:
        """The user-side partition of a user (the producer keys events by the user id)."""
        return key_partition(user_id, self.partitions) if self.partitions > 1 else 0

    def list_owners(self, histories: Iterable[Sequence[str]]) -> tuple[list[str], list[str]]:
        """The items whose neighbour lists and successor lists scoring these histories reads."""
        near: set[str] = set()
        nexts: set[str] = set()
        for history in histories:
            near.update(self.params.neighbor_sources(history))
            nexts.update(self.params.successor_sources(history))
        return sorted(near), sorted(nexts)

    def candidates(
        self,
        histories: Sequence[Sequence[str]],
        neighbors: Lists,
        successors: Lists,
        trending: Sequence[tuple[str, float]],
        excluded: Sequence[Sequence[str]] | None = None,
    ) -> Candidates:
        """The rows' candidates; ``excluded``: per row, what its user said no to (served
        lists leave it out; learning passes none: an excluded item is a fair negative pick).
        The trending items are no longer cold: the stream has shown them."""
        if self.content:
            self.content.warmed(item for item, _ in trending)
        return candidates(
            histories,
            neighbors,
            successors,
            trending,
            self.index,
            self.params,
            excluded,
            self.content,
        )

    def weights(self, partitions: Sequence[int]) -> np.ndarray:
        """One weight vector per row: the partition's ranker."""
        return np.array([self.ranker(p).weights() for p in partitions])

    def learn_from(
        self,
        cands: Candidates,
        row_partitions: Sequence[int],
        events: Sequence[tuple[int, str, int, int]],
        seen: Sequence[Sequence[str]] = (),
    ) -> int:
        """Each event ``(row, item, seed, partition)`` teaches its partition's ranker, unless
        its item is in ``seen[row]`` (a repeat: seen items are never candidates, so a repeat
        would teach that an item without features beats the candidates); returns the pairs
        learned. Every event counts in its ranker's ``n_events``."""
        for _, _, _, part in events:
            self.ranker(part).n_events += 1
        if seen:
            events = [e for e in events if e[1] not in seen[e[0]]]
        weights = self.weights(row_partitions)
        pairs = training_pairs(
            cands,
            weights,
            [(row, item, seed) for row, item, seed, _ in events],
            self.index,
            n_negatives=self.n_negatives,
            hard_pool=self.hard_pool,
            outside_positives=self.outside_positives,
        )
        by_partition: dict[int, list[np.ndarray]] = {}
        for at, differences in pairs:
            by_partition.setdefault(events[at][3], []).append(differences)
        for part, learned in by_partition.items():
            self.ranker(part).learn_events(learned)
        return sum(differences.shape[0] for _, differences in pairs)

    @staticmethod
    def event_histories(
        before: Mapping[str, Sequence[str]],
        events: Sequence[tuple[str, str, int, int]],
        history_len: int,
    ) -> list[list[str]]:
        """Each event's user history just before it: ``before[user]`` plus her earlier items of
        the batch (event time, ties in batch order), as ``merge_history`` builds it.

        A whole session often falls into one micro-batch: learning its events against the
        history before the batch would teach the ranker that the last item says little about
        the next one, which is wrong (the sequential features carry most of the signal).

        >>> StreamScorer.event_histories({"u": ["a"]}, [("u", "c", 2, 0), ("u", "b", 1, 0)], 10)
        [['a', 'b'], ['a']]
        """
        return StreamScorer.event_priors(before, events, history_len)[0]

    @staticmethod
    def event_priors(
        before: Mapping[str, Sequence[str]],
        events: Sequence[tuple[str, str, int, int]],
        history_len: int,
    ) -> tuple[list[list[str]], list[int]]:
        """:meth:`event_histories` and :meth:`teaching` in one pass. A set per user says
        whether an event repeats an item of her history: scanning a 200-item history per
        event, three times, was 4% of the worker's CPU on the 1M-event stream.

        >>> StreamScorer.event_priors({"u": ["a"]}, [("u", "a", 1, 0), ("u", "b", 2, 0)], 10)
        ([['a'], ['a']], [1])
        """
        running: dict[str, tuple[list[str], set[str] | None]] = {}
        out: list[list[str]] = [[] for _ in events]
        repeats: set[int] = set()
        for at in sorted(range(len(events)), key=lambda i: events[i][2]):
            user, item = events[at][0], events[at][1]
            state = running.get(user)
            if state is None:
                start = list(before.get(user, ()))
                distinct = set(start)
                # a history that is not distinct (not one of ours) is scanned instead
                state = (start, distinct if len(distinct) == len(start) else None)
            history, members = state
            out[at] = history
            if item in (history if members is None else members):  # a repeat moves to the end
                repeats.add(at)
                merged = merge_history(history, [item], history_len)
                running[user] = (merged, set(merged) if len(merged) < len(history) else members)
                continue
            grown = [*history, item]  # histories are distinct: merge_history's result
            excess = len(grown) - history_len
            if members is not None:
                members.add(item)
                for dropped in grown[:excess] if excess > 0 else ():
                    members.discard(dropped)
            running[user] = (grown[excess:] if excess > 0 else grown, members)
        return out, [at for at in range(len(events)) if at not in repeats]

    def learn(
        self,
        before: Mapping[str, Sequence[str]],
        events: Sequence[tuple[str, str, int, int]],
        neighbors: Lists,
        successors: Lists,
        trending: Sequence[tuple[str, float]],
        history_len: int = 200,
        priors: Sequence[Sequence[str]] | None = None,
        taught: Sequence[int] | None = None,
    ) -> int:
        """The rankers learn a batch: each event ``(user, item, timestamp, partition)`` against
        the features of its user's history just before it (``priors``, by default
        :meth:`event_histories`), with the lists and the trending list as they were before the
        batch. A repeat (its item in that history) is counted and skipped before any feature is
        computed: seen items are never candidates, so it would teach nothing true."""
        if priors is None:
            priors, taught = self.event_priors(before, events, history_len)
        elif taught is None:
            taught = self.teaching(events, priors)
        for at in set(range(len(events))).difference(taught):  # repeats are counted too
            self.ranker(events[at][3]).n_events += 1
        cands = self.candidates([priors[at] for at in taught], neighbors, successors, trending)
        return self.learn_from(
            cands,
            [events[at][3] for at in taught],
            [
                (row, events[at][1], event_seed(*events[at][:3]), events[at][3])
                for row, at in enumerate(taught)
            ],
        )

    def recommend_from(
        self,
        cands: Candidates,
        histories: Sequence[Sequence[str]],
        row_partitions: Sequence[int],
        trending: Sequence[tuple[str, float]],
        n: int,
        excluded: Sequence[Sequence[str]] | None = None,
    ) -> list[list[Recommendation]]:
        weights = self.weights(row_partitions)
        return recommendations(
            cands, histories, weights, trending, n, self.index, excluded, self.params.cold_slot
        )

    def recommend(
        self,
        histories: Mapping[str, Sequence[str]],
        neighbors: Lists,
        successors: Lists,
        trending: Sequence[tuple[str, float]],
        n: int,
        partition_of: Callable[[str], int] | None = None,
        excluded: Mapping[str, Sequence[str]] | None = None,
    ) -> dict[str, list[Recommendation]]:
        """Every user's top-``n``, each ranked by her partition's ranker, without the items of
        her ``excluded`` (what she said no to)."""
        users = list(histories)
        lists = [histories[u] for u in users]
        rows = [excluded.get(u, ()) for u in users] if excluded else None
        cands = self.candidates(lists, neighbors, successors, trending, rows)
        part = partition_of or self.partition_of
        ranked = self.recommend_from(cands, lists, [part(u) for u in users], trending, n, rows)
        return dict(zip(users, ranked, strict=True))

    def versions(self, partitions: Iterable[int]) -> dict[str, str]:
        """``{"ranker": ...}`` naming the learners that ranked (model and update counts)."""
        parts = sorted(set(partitions))
        if not parts:
            return {}
        counts = ",".join(f"p{p}:{self.ranker(p).n_updates}" for p in parts)
        return {"ranker": f"{self.ranker(parts[0]).version.split('@')[0]}@{counts}"}


class StreamModel:
    """The stream model in one process, one event at a time: the evaluator's ``streamrec``.

    The item side's rows and lists are kept here instead of in a Faust table and Redis; the
    scoring and the learning are the worker's own (:class:`StreamScorer`), sharded into as
    many learners as the worker's user-side partitions. ``feedback`` says how events count: a
    negative one (a dislike, a skip, a low rating) teaches nothing and only joins its user's
    ``excluded`` items, which are never recommended to her. ``catalog``: item records
    published before the stream starts (their categories feed the content feature and the
    cold pool, as the worker's catalog follower does).

    Examples
    --------
    >>> model = StreamModel(partitions=1)
    >>> t = 1_700_000_000_000
    >>> for n, (u, i) in enumerate([("a", "x"), ("a", "y"), ("b", "x")]):
    ...     model.learn_one(Interaction(u, i, "view", t + n))
    >>> model.rank("b", k=2)
    ['y']
    >>> model.learn_one(Interaction("b", "y", "dislike", t + 3))
    >>> model.rank("b", k=2), model.excluded
    ([], {'b': ['y']})
    """

    #: the prequential loop hands it negative events too (it reads them as negatives)
    reads_feedback = True

    def __init__(
        self,
        *,
        partitions: int = 4,
        history_len: int = 200,
        popularity_half_life_s: float = 3_600.0,
        top_n: int = 20,
        trending_depth: int = 220,
        params: ScoringParams | None = None,
        min_trained: int = 1_000,
        feedback: Feedback = DEFAULT_FEEDBACK,
        catalog: Iterable[ItemRecord] = (),
    ) -> None:
        self.history_len = history_len
        self.feedback = feedback
        self.top_n = top_n
        self.trending_depth = trending_depth
        self.scorer = StreamScorer(params=params, partitions=partitions, min_trained=min_trained)
        # published before the first event, as `streamrec produce --items` does before a replay
        for record in catalog:
            self.scorer.content.apply(record.item_id, record)
        self.histories: dict[str, list[str]] = {}
        #: user -> the items she said no to, most recent last (``history_len`` at most)
        self.excluded: dict[str, list[str]] = {}
        #: user -> her newest act on recent items that was more than a view (reasons' verbs)
        self.acts: dict[str, dict[str, str]] = {}
        self.rows: dict[str, dict] = {}
        self.norms: dict[str, float] = {}
        self.neighbors: dict[str, list[tuple[str, float]]] = {}
        self.successors: dict[str, list[tuple[str, float]]] = {}
        self.popularity = DecayedPopularity(popularity_half_life_s)
        self._now_ms = 0
        self._version = 0
        self._cached: tuple[str, int, int, bool, Candidates, list] | None = None

    def _scored(
        self, user_id: str, now_ms: int, excluded: Sequence[str] = ()
    ) -> tuple[Candidates, list]:
        """The user's candidates at ``now_ms`` without ``excluded``, cached: the evaluator's
        ``rank`` and the ``learn_one`` after it share them when she has no exclusions."""
        cached = self._cached
        key = (user_id, self._version, now_ms, bool(excluded))
        if cached is not None and cached[:4] == key:
            return cached[4], cached[5]
        trending = self.popularity.top(self.trending_depth, now_ms)
        cands = self.scorer.candidates(
            [self.histories.get(user_id, [])],
            self.neighbors,
            self.successors,
            trending,
            [excluded] if excluded else None,
        )
        self._cached = (*key, cands, trending)
        return cands, trending

    def learn_one(self, event: Interaction) -> None:
        user, item, ts = event.user_id, event.item_id, event.timestamp_ms
        if self.feedback.is_negative(event):
            # no pair, transition, popularity or ranker step: only excluded from now on
            self.excluded[user] = merge_history(
                self.excluded.get(user, []), [item], self.history_len
            )
            self._now_ms = max(self._now_ms, ts)
            self._version += 1
            return
        cands, _ = self._scored(user, ts)
        part = self.scorer.partition_of(user)
        history = self.histories.get(user, [])
        self.scorer.learn_from(
            cands, [part], [(0, item, event_seed(user, item, ts), part)], [set(history)]
        )
        self.learn_statistics(event)

    def learn_statistics(self, event: Interaction) -> None:
        """Everything a positive event changes but the rankers: its pair and transition rows,
        the published lists, its user's history, popularity (the worker's user and item
        sides)."""
        user, item, ts = event.user_id, event.item_id, event.timestamp_ms
        history = self.histories.get(user, [])
        weight = self.feedback.weight(event)
        learned = user_side_batch(history, [(item, weight)], window=PAIR_WINDOW)
        touched = {}
        for key, delta in deltas_by_item(learned, transitions(history, [item])).items():
            row = apply_delta(self.rows.get(key), delta, MAX_ROW_PAIRS, MAX_SUCCESSORS)
            touched[key] = row
            self.norms[key] = float(row.get("n", 0.0))
        self.rows.update(touched)
        lists, nexts = published_lists(touched, self.norms, NEIGHBORS_M, MAX_SUCCESSORS)
        self.neighbors.update(lists)
        self.successors.update(nexts)
        self.histories[user] = merge_history(history, [item], self.history_len)
        act = act_of(event.event_type, event.value)
        if act is not None or user in self.acts:
            old = self.acts.get(user, {})
            self.acts[user] = merge_acts(old, [(item, act)], self.histories[user])
        self.popularity.learn_one(item, weight, ts)
        self._now_ms = max(self._now_ms, ts)
        self._version += 1

    def recommend(
        self, user_id: str, k: int = 10, now_ms: int | None = None
    ) -> list[Recommendation]:
        now = now_ms if now_ms is not None else self._now_ms
        excluded = self.excluded.get(user_id, ())
        cands, trending = self._scored(user_id, now, excluded)
        part = self.scorer.partition_of(user_id)
        history = self.histories.get(user_id, [])
        rows = [excluded] if excluded else None
        recs = self.scorer.recommend_from(cands, [history], [part], trending, k, rows)[0]
        return with_acts(recs, self.acts.get(user_id))

    def rank(self, user_id: str, k: int = 10, now_ms: int | None = None) -> list[str]:
        return [r.item_id for r in self.recommend(user_id, k, now_ms)]
