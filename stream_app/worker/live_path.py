"""The worker's per-batch logic, free of Faust: events in, user histories and top-N out.

The user side (``stream_app.worker.user_side``) hands each micro-batch of valid events to
``LivePath.process``, which updates trending popularity, lets the ``Scorer`` learn the batch
and rank every affected user, writes the lists with the counters, and records the telemetry.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from models.events import DEFAULT_FEEDBACK, Feedback, Interaction, InvalidEvent, decode_event
from models.online.stream.deltas import merge_history
from models.online.stream.reasons import with_acts
from models.online.stream.scoring import TRENDING_REASON
from stream_app.cache.base import CacheUnavailable, RecCache, Recommendation, UserRecs
from stream_app.cache.keys import counted_marks
from stream_app.cache.telemetry import HIT_K
from stream_app.settings import Settings
from stream_app.worker.telemetry import BatchTelemetry, Trials, judge, online_hits, sampled

log = logging.getLogger(__name__)

#: Event timestamps more than this ahead of the wall clock are clamped for decay: one event from
#: a client with a wrong clock (say, year 3000) would otherwise move the forward-decay epoch
#: there and make every real event's weight 0 from then on.
FUTURE_TOLERANCE_MS = 3_600_000

#: Share of events judged for the sequential online HitRate@10: ``Settings.hitrate_sample``'s
#: default (``STREAMREC_HITRATE_SAMPLE``), read from there so the two cannot drift apart.
DEFAULT_HITRATE_SAMPLE = Settings().hitrate_sample

#: History items written with each user's list (``UserRecs.recent``): what the dashboard shows
#: the list follows from.
RECENT = 10


def parse_message(value: object) -> Interaction:
    """A Kafka message value (raw bytes, or None for a tombstone) to a validated event.

    Never raises anything but ``InvalidEvent``, whose message is the DLQ reason.

    >>> parse_message(b'{"user_id":1,"item_id":2,"event_type":"view","timestamp":1700000000000}')
    Interaction(user_id='1', item_id='2', event_type='view', timestamp_ms=1700000000000, ...)
    >>> parse_message(None)
    Traceback (most recent call last):
    ...
    models.events.InvalidEvent: empty message value
    """
    if value is None or value == b"" or value == "":
        raise InvalidEvent("empty message value")
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidEvent(f"message value of unexpected type {type(value).__name__}")
    try:
        return decode_event(bytes(value))
    except InvalidEvent:
        raise
    except (ValueError, TypeError, RecursionError) as exc:
        # json can raise these on pathological input (e.g. deeply nested arrays).
        raise InvalidEvent(f"undecodable event: {type(exc).__name__}: {exc}") from None


def items_by_user(events: Iterable[Interaction]) -> dict[str, list[str]]:
    """Each user's items of a batch in event-time order (ties kept in arrival order).

    >>> ev = [Interaction("u", "b", "view", 2_000_000_000_000),
    ...       Interaction("u", "a", "view", 1_900_000_000_000)]
    >>> items_by_user(ev)
    {'u': ['a', 'b']}
    """
    out: dict[str, list[str]] = {}
    for event in sorted(events, key=lambda e: e.timestamp_ms):
        out.setdefault(event.user_id, []).append(event.item_id)
    return out


def positions_in_batch(events: Iterable[Interaction]) -> list[tuple[Interaction, int]]:
    """Each event with its 1-based position among its user's events of the batch, in the order
    ``items_by_user`` lists them (event time, ties in arrival order): event j of a user follows
    her items ``items_by_user(...)[user][:j-1]``.

    >>> ev = [Interaction("u", "b", "view", 2), Interaction("v", "x", "view", 1),
    ...       Interaction("u", "a", "view", 1)]
    >>> [(e.user_id, e.item_id, j) for e, j in positions_in_batch(ev)]
    [('v', 'x', 1), ('u', 'a', 1), ('u', 'b', 2)]
    """
    counts: dict[str, int] = {}
    out: list[tuple[Interaction, int]] = []
    for event in sorted(events, key=lambda e: e.timestamp_ms):
        counts[event.user_id] = counts.get(event.user_id, 0) + 1
        out.append((event, counts[event.user_id]))
    return out


def sequential_key(user_id: str, position: int) -> str:
    """The synthetic ``Scorer`` key of "user just before her ``position``-th event of the batch".

    Keys of one call are all of this form, so none can collide with another (the position is
    the text after the last NUL, and a user id is whatever precedes it).

    >>> sequential_key("u7", 3)
    'u7\\x003'
    """
    return f"{user_id}\x00{position}"


#: user -> the items she said no to (``UserRow.excluded``): never recommended to her
Excluded = Mapping[str, Sequence[str]]
#: user -> her newest act on each recent item that was more than a view (``UserRow.acts``)
Acts = Mapping[str, Mapping[str, str]]


def trending_top_n(
    trending: Sequence[tuple[str, float]],
    seen: Iterable[str],
    n: int,
    reason: str = TRENDING_REASON,
) -> list[Recommendation]:
    """The ``n`` most popular items the user has not seen, in trending order.

    >>> [r.item_id for r in trending_top_n([("a", 3.0), ("b", 2.0), ("c", 1.0)], {"a"}, 2)]
    ['b', 'c']
    """
    excluded = set(seen)
    out: list[Recommendation] = []
    for item_id, score in trending:
        if item_id in excluded:
            continue
        out.append(Recommendation(item_id, score, reason))
        if len(out) == n:
            break
    return out


class Scorer(Protocol):
    """Turns a batch's affected users into their top-N. The worker's only model dependency."""

    @property
    def versions(self) -> Mapping[str, str]:
        """Self-describing versions stored with every recommendation (name -> version)."""
        ...

    def candidates_needed(self, n: int, history_len: int) -> int:
        """How many trending items to fetch so every user still has ``n`` after exclusions."""
        ...

    def recommend_batch(
        self,
        histories: Mapping[str, Sequence[str]],
        trending: Sequence[tuple[str, float]],
        n: int,
        excluded: Excluded | None = None,
        *,
        between_batches: bool = False,
    ) -> dict[str, list[Recommendation]]:
        """Each user's top-``n``: none of her history, none of her ``excluded``.
        ``between_batches``: these users are no batch's (the refresh after a session-model
        swap): whatever the scorer keeps per batch is left as the last batch left it."""
        ...

    def learn_batch(
        self,
        events: Sequence[Interaction],
        before: Mapping[str, Sequence[str]],
        partitions: Sequence[int],
    ) -> None:
        """Learn the batch's events (``partitions``: each event's), given the users'
        histories before it; called before the batch is scored."""
        ...

    def checkpoint(self) -> Mapping[str, bytes]:
        """Learned state to write together with the batch's counted marks."""
        ...

    def checkpointed(self) -> None:
        """The last :meth:`checkpoint` was written."""
        ...

    def rewrite_state(self, partitions: Sequence[int]) -> None:
        """The cache lost the learned state: the next :meth:`checkpoint` holds the state of
        each of ``partitions`` this scorer has in memory, learned since or not."""
        ...


class LearnsNothing:
    """The learning half of :class:`Scorer` for a scorer without a learner: nothing to learn,
    nothing to checkpoint."""

    __slots__ = ()

    def learn_batch(
        self,
        events: Sequence[Interaction],
        before: Mapping[str, Sequence[str]],
        partitions: Sequence[int],
    ) -> None:
        return None

    def checkpoint(self) -> Mapping[str, bytes]:
        return {}

    def checkpointed(self) -> None:
        return None

    def rewrite_state(self, partitions: Sequence[int]) -> None:
        return None


@dataclass(frozen=True, slots=True)
class TrendingScorer(LearnsNothing):
    """Recommend the globally trending items each user has not seen yet.

    Examples
    --------
    >>> scorer = TrendingScorer()
    >>> recs = scorer.recommend_batch({"u1": ["a"]}, [("a", 5.0), ("b", 1.0)], n=3)
    >>> [(r.item_id, r.reason) for r in recs["u1"]]
    [('b', 'trending now')]
    """

    reason: str = TRENDING_REASON
    version: str = "trending-v1"

    @property
    def versions(self) -> Mapping[str, str]:
        return {"trending": self.version}

    def candidates_needed(self, n: int, history_len: int) -> int:
        return n + history_len

    def recommend_batch(
        self,
        histories: Mapping[str, Sequence[str]],
        trending: Sequence[tuple[str, float]],
        n: int,
        excluded: Excluded | None = None,
        *,
        between_batches: bool = False,
    ) -> dict[str, list[Recommendation]]:
        excluded = excluded or {}
        return {
            user: trending_top_n(trending, [*history, *excluded.get(user, ())], n, self.reason)
            for user, history in histories.items()
        }


@dataclass(frozen=True, slots=True)
class Judgement:
    """A batch's online HitRate@10 / MRR@10 trials, as far as they can be judged before it is
    scored: ``cached`` (every event), ``seq`` (the sampled first-of-user events).

    ``later`` holds the sampled events that are not their user's first of the batch: synthetic
    key (``sequential_key``) -> (the user's history just before the event, the event's item).
    They are judged once the batch's trending list is known (``LivePath._judge_later``).
    """

    cached: Trials
    seq: Trials
    later: Mapping[str, tuple[list[str], str]]


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one batch did (for logs, counters and tests)."""

    events: int
    users: int
    recs_written: int
    degraded: bool
    #: for a degraded batch: the step that failed, to call again once the cache is back (the
    #: caller holds the batch meanwhile, so its events are counted once they are written)
    retry: Callable[[], BatchResult] | None = None


class LivePath:
    """Trending update, scoring and one cache write per batch.

    Examples
    --------
    >>> from stream_app.cache import MemoryCache
    >>> cache = MemoryCache()
    >>> path = LivePath(cache, TrendingScorer(), top_n=2, half_life_s=3600, rec_ttl_s=60,
    ...                 history_len=10)
    >>> ev = [Interaction("u1", "a", "view", 1_700_000_000_000),
    ...       Interaction("u2", "b", "purchase", 1_700_000_000_000)]
    >>> path.process(ev, {"u1": ["a"], "u2": ["b"]}, dlq=0).recs_written
    2
    >>> [r.item_id for r in cache.get_recs("u1").items]
    ['b']
    """

    def __init__(
        self,
        cache: RecCache,
        scorer: Scorer,
        *,
        top_n: int,
        half_life_s: float,
        rec_ttl_s: int,
        history_len: int,
        telemetry: Callable[[BatchTelemetry], None] | None = None,
        hitrate_sample: float = DEFAULT_HITRATE_SAMPLE,
        feedback: Feedback = DEFAULT_FEEDBACK,
    ) -> None:
        if not 0.0 <= hitrate_sample <= 1.0:
            raise ValueError(f"hitrate_sample must be in [0, 1], got {hitrate_sample!r}")
        self.cache = cache
        self.scorer = scorer
        self.top_n = top_n
        self.half_life_s = half_life_s
        self.rec_ttl_s = rec_ttl_s
        self.history_len = history_len
        #: batches whose cache writes were given up and not yet counted in Redis
        self.pending_cache_errors = 0
        #: where each batch's online HitRate / freshness go (``TelemetryRecorder.record``)
        self.telemetry = telemetry
        #: share of events judged for the sequential HitRate@10 (deterministic per event)
        self.hitrate_sample = hitrate_sample
        #: how events count: a negative one adds nothing to trending, teaches no ranker and is
        #: no HitRate trial (the settings', as ``streamrec evaluate``'s)
        self.feedback = feedback
        #: top of trending after the previous batch: what a user without a cached list was
        #: being served (the read API's fallback) when this batch's events happened
        self._served_trending: list[str] = []
        #: the latest batch's "now" (event time, ms), None before the first: a rebuild and a
        #: refresh decay trending to it
        self.now_ms: int | None = None

    def process(
        self,
        events: Sequence[Interaction],
        histories: Mapping[str, Sequence[str]],
        dlq: int = 0,
        now_ms: int | None = None,
        kafka_ts_ms: Sequence[int] | None = None,
        hwm: tuple[str, Sequence[tuple[int, int]]] | None = None,
        *,
        before: Mapping[str, Sequence[str]] | None = None,
        durable: Callable[[], None] | None = None,
        excluded: Excluded | None = None,
        acts: Acts | None = None,
    ) -> BatchResult:
        """Apply one batch: trending, the rankers' learning, every affected user's top-N and
        the counters written together, then the telemetry. ``histories`` are the affected
        users' histories *after* the batch, ``before`` the same users' histories *before* it.

        Decay is in event time ("now" is the batch's latest event), so a replay of old data
        ranks as it would have live. A cache outage degrades (logged, counted on the next
        successful write) instead of raising. ``hwm`` = (topic, each event's (partition,
        offset)): trending and the counters then count each event once, even if a restart or a
        rebalance hands it over twice. ``durable`` is called (and may raise) right before the
        counted marks move with the recs: what the batch must have made durable first (the
        agent's item deltas) is waited for while trending and scoring run. Without ``before``
        the sequential HitRate is skipped (docs/stream.md, "Telemetry"). ``dlq``: dead letters
        to add to the counter with the batch, for callers that send none (the worker's own are
        counted once each by ``stream_app.worker.dead_letters``). ``excluded``: the affected
        users' exclusions after the batch (those who have any), left out of their lists;
        ``acts`` their newest acts on recent items, the verbs of their reasons.
        """
        stats = {"events": len(events), "dlq": dlq, "batches": 1}
        if not events:
            return self._write([], stats, 0, 0)
        is_negative = self.feedback.is_negative
        positive = [not is_negative(e) for e in events]
        judged = None
        if self.telemetry is not None:
            judged = self._judge(events, positive, histories, before, excluded)
        trending = self._update_trending(events, positive, now_ms, hwm)
        if trending is None:  # nothing was learned or written: the whole batch again
            again = functools.partial(
                self.process, events, histories, dlq, now_ms, kafka_ts_ms, hwm,
                before=before, durable=durable, excluded=excluded,
            )  # fmt: skip
            return BatchResult(len(events), len(histories), 0, degraded=True, retry=again)
        if before is not None and hwm is not None:
            # Exactly the events the counted marks are about to count (``events`` are past
            # them): the rankers' checkpoint below moves with those marks.
            learned = [(e, p) for e, (p, _), ok in zip(events, hwm[1], positive, strict=True) if ok]
            self.scorer.learn_batch([e for e, _ in learned], before, [p for _, p in learned])
        recs, computed_at, versions = self._ranked(histories, trending, excluded, acts)
        counted = (counted_marks(hwm[0]), hwm[1]) if hwm else None
        if durable is not None:
            durable()

        def commit() -> BatchResult:
            # The batch was learned: a retry writes what it computed, never learns it again.
            state = self.scorer.checkpoint()
            result = self._write(recs, dict(stats), len(histories), len(events), counted, state)
            if result.degraded:
                return replace(result, retry=commit)
            self.scorer.checkpointed()
            if judged is not None:
                # After the write, so the extra scorer call never delays the recommendations.
                stamps = (
                    kafka_ts_ms if kafka_ts_ms is not None else [e.timestamp_ms for e in events]
                )
                self._report(judged, trending, stamps, computed_at, versions, excluded)
            return result

        return commit()

    def rebuild(
        self,
        histories: Mapping[str, Sequence[str]],
        excluded: Excluded | None,
        partitions: Sequence[int],
        now_ms: int,
        acts: Acts | None = None,
    ) -> int:
        """Rank and write the lists of ``histories``' users with the live scoring, and the
        rankers' states of ``partitions`` from memory, after Redis lost its data
        (``stream_app.worker.rebuild``); returns the lists written. No counter moves: no event
        was processed. Raises ``CacheUnavailable``: the caller tries again later."""
        k = self.scorer.candidates_needed(self.top_n, self.history_len)
        trending = self.cache.top_trending(k, self.half_life_s, now_ms)
        self.scorer.rewrite_state(partitions)
        recs = (
            self._ranked(histories, trending, excluded, acts, between_batches=True)[0]
            if histories
            else []
        )
        self.cache.write_batch(recs, self.rec_ttl_s, {}, state=self.scorer.checkpoint() or None)
        self.scorer.checkpointed()
        return len(recs)

    def _update_trending(
        self,
        events: Sequence[Interaction],
        positive: Sequence[bool],
        now_ms: int | None,
        hwm: tuple[str, Sequence[tuple[int, int]]] | None,
    ) -> list[tuple[str, float]] | None:
        """The batch's positive weights added to trending (each event once, by the trending
        marks; a negative event adds nothing, not even its item at 0); the new top, decayed to
        the batch's latest event of any kind, or None when the cache is down."""
        latest_ok = int(time.time() * 1000) + FUTURE_TOLERANCE_MS
        weight = self.feedback.weight
        weights = [(e.item_id, weight(e), min(e.timestamp_ms, latest_ok)) for e in events]
        now = now_ms if now_ms is not None else max(ts for _, _, ts in weights)
        self.now_ms = max(now, self.now_ms or now)
        if not all(positive):
            weights = [w for w, ok in zip(weights, positive, strict=True) if ok]
            if hwm is not None:
                hwm = (hwm[0], [at for at, ok in zip(hwm[1], positive, strict=True) if ok])
        k = self.scorer.candidates_needed(self.top_n, self.history_len)
        try:
            trending = self.cache.update_trending(weights, self.half_life_s, now, k, hwm=hwm)
        except CacheUnavailable as exc:
            log.warning("trending update skipped, cache unavailable: %s", exc)
            self.pending_cache_errors += 1
            return None
        self._served_trending = [item for item, _ in trending[:HIT_K]]
        return list(trending)

    def refresh(
        self,
        histories: Mapping[str, Sequence[str]],
        read_at_ms: int,
        excluded: Excluded | None = None,
        acts: Acts | None = None,
    ) -> int:
        """Recompute these users' lists between batches (after a session-model swap) as a
        batch would: the same scorer and ``UserRecs``, trending decayed to the last batch's
        time. Stores those still wanted (``RecCache.write_refreshed``; ``read_at_ms``: when
        their histories were read) and returns how many. A scoring the session model did not
        serve (it failed) stores nothing: CF-only lists would replace blended ones for nothing.
        """
        if not histories:
            return 0
        k = self.scorer.candidates_needed(self.top_n, self.history_len)
        now = self.now_ms if self.now_ms is not None else int(time.time() * 1000)
        trending = self.cache.top_trending(k, self.half_life_s, now)
        recs, _, versions = self._ranked(histories, trending, excluded, acts, between_batches=True)
        if "session" not in versions:
            return 0
        return self.cache.write_refreshed(recs, self.rec_ttl_s, read_at_ms)

    def _ranked(
        self,
        histories: Mapping[str, Sequence[str]],
        trending: Sequence[tuple[str, float]],
        excluded: Excluded | None,
        acts: Acts | None = None,
        between_batches: bool = False,
    ) -> tuple[list[UserRecs], int, dict[str, str]]:
        """Every affected user's top-N (reasons with the verbs of her ``acts``), the time
        computed (epoch ms) and the versions used."""
        ranked = self.scorer.recommend_batch(
            histories, trending, self.top_n, excluded or None, between_batches=between_batches
        )
        computed_at = int(time.time() * 1000)
        versions = dict(self.scorer.versions)
        acts = acts or {}
        recs = [
            UserRecs(
                user,
                tuple(with_acts(items, acts.get(user))),
                versions,
                computed_at,
                tuple(histories[user][-RECENT:]),
            )
            for user, items in ranked.items()
        ]
        return recs, computed_at, versions

    def _judge(
        self,
        events: Sequence[Interaction],
        positive: Sequence[bool],
        histories: Mapping[str, Sequence[str]],
        before: Mapping[str, Sequence[str]] | None,
        excluded: Excluded | None,
    ) -> Judgement | None:
        """The batch's trials against what was cached before it; None if the cache is down.

        Cached: every event. Sequential: sampled first-of-user events are judged here (the
        list cached before the batch *is* the one before them); sampled later events are
        returned in ``Judgement.later`` with the history the scorer needs. With ``before``, an
        event on an item already in its user's history just before it is no trial in either
        form: the offline protocol's rule (``models.evaluation.prequential``), since seen items
        are never recommended. A negative event is no trial either, and neither is an event on
        an item of its user's exclusions (``excluded``, as of the batch's end: an item she
        turns down later in the same batch makes an earlier event on it no trial here, where
        the offline protocol would score it).
        """
        try:
            tops = self.cache.get_many_items(list(histories))
        except CacheUnavailable:
            return None
        if not all(positive):
            events = [e for e, ok in zip(events, positive, strict=True) if ok]
        excluded = excluded or {}
        later: dict[str, tuple[list[str], str]] = {}
        if before is None:
            pairs = ((e.user_id, e.item_id) for e in events)
            return Judgement(online_hits(pairs, tops, self._served_trending), Trials(), later)
        batch_items = items_by_user(events)
        seen: dict[str, set[str]] = {}
        cases: list[tuple[str, Sequence[str]]] = []
        firsts: list[tuple[str, Sequence[str]]] = []
        for event, j in positions_in_batch(events):
            user, item = event.user_id, event.item_id
            own = seen.get(user)
            if own is None:
                own = seen[user] = set(before.get(user, ()))
                own.update(excluded.get(user, ()))
            repeat = item in own
            own.add(item)
            if repeat:
                continue
            top = tops.get(user, self._served_trending)
            cases.append((item, top))
            if not sampled(user, item, event.timestamp_ms, self.hitrate_sample):
                continue
            if j == 1:
                firsts.append((item, top))
            else:
                prior = merge_history(
                    before.get(user, ()), batch_items[user][: j - 1], self.history_len
                )
                later[sequential_key(user, j)] = (prior, item)
        return Judgement(judge(cases), judge(firsts), later)

    def _judge_later(
        self,
        judged: Judgement,
        trending: Sequence[tuple[str, float]],
        excluded: Excluded | None = None,
    ) -> Trials:
        """The batch's sequential trials, scoring the sampled later events' prior histories in
        ONE extra ``recommend_batch`` (synthetic keys, so the protocol is unchanged) with the
        batch's trending list and each user's ``excluded`` (as of the batch's end). If that
        call fails the batch's whole sample is dropped: keeping only its first-of-user events
        would bias the rates toward the cached ones.
        """
        if not judged.later:
            return judged.seq
        keyed = None
        if excluded:
            users = {key: key.rsplit("\x00", 1)[0] for key in judged.later}
            keyed = {key: excluded[u] for key, u in users.items() if u in excluded}
        try:
            ranked = self.scorer.recommend_batch(
                {key: prior for key, (prior, _) in judged.later.items()},
                trending,
                self.top_n,
                keyed or None,
            )
        except Exception as exc:  # best effort: metrics must never cost recommendations
            log.warning("sequential HitRate sample of a batch dropped: %r", exc)
            return Trials()
        later = judge(
            (item, [r.item_id for r in ranked.get(key, ())])
            for key, (_, item) in judged.later.items()
        )
        return judged.seq + later

    def _report(
        self,
        judged: Judgement,
        trending: Sequence[tuple[str, float]],
        stamps: Sequence[int],
        computed_at: int,
        versions: Mapping[str, str],
        excluded: Excluded | None = None,
    ) -> None:
        """The batch's telemetry: its trials (the sequential ones completed now), freshness
        against the time its lists were computed, and the versions that served."""
        assert self.telemetry is not None
        seq = self._judge_later(judged, trending, excluded)
        batch = BatchTelemetry.from_batch(
            stamps,
            computed_at,
            hits=judged.cached.hits,
            trials=judged.cached.trials,
            rr=judged.cached.rr,
            seq_hits=seq.hits,
            seq_trials=seq.trials,
            seq_rr=seq.rr,
            model_versions=versions,
        )
        try:
            self.telemetry(batch)
        except Exception as exc:  # best effort: metrics must never cost recommendations
            log.warning("telemetry not recorded: %r", exc)

    def _write(
        self,
        recs: list[UserRecs],
        stats: dict[str, int],
        users: int,
        events: int,
        hwm: tuple[str, Sequence[tuple[int, int]]] | None = None,
        state: Mapping[str, bytes] | None = None,
    ) -> BatchResult:
        stats["recs_written"] = len(recs)
        stats["redis_errors"] = self.pending_cache_errors
        try:
            self.cache.write_batch(recs, self.rec_ttl_s, stats, hwm=hwm, state=state or None)
        except CacheUnavailable as exc:
            log.warning("batch of %d recs not written, cache unavailable: %s", len(recs), exc)
            self.pending_cache_errors += 1
            return BatchResult(events, users, 0, degraded=True)
        self.pending_cache_errors = 0
        return BatchResult(events, users, len(recs), degraded=False)
