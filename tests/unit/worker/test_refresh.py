"""The refresh after a session-model swap, without Kafka or Redis: who is refreshed (window, cap,
owned partitions, most recent first), at what pace, what a newer swap does to a run in progress,
and what the live path's ``refresh`` stores (the race rule of ``RecCache.write_refreshed``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from models.online.stream import SESSION_REASON
from stream_app.cache import MemoryCache, Recommendation, UserRecs
from stream_app.worker.live_path import LivePath
from stream_app.worker.online_scorer import OnlineScorer
from stream_app.worker.refresh import MAX_CHUNK, Pace, RecentUsers, Refresher

T0 = 1_700_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_recent_users_keep_the_window_and_the_cap_per_partition() -> None:
    clock = Clock()
    recent = RecentUsers(window_s=100, cap=3, clock=clock)
    recent.touch([(f"p0-{i}", 0) for i in range(5)] + [("p1-a", 1)])
    assert recent.select({0, 1}) == [("p0-2", 0), ("p0-3", 0), ("p0-4", 0), ("p1-a", 1)]
    clock.now = 60.0
    recent.touch([("p0-3", 0), ("p1-b", 1)])  # seen again: most recent now
    assert recent.select({0, 1})[:2] == [("p0-3", 0), ("p1-b", 1)]
    assert recent.select({1}) == [("p1-b", 1), ("p1-a", 1)]
    clock.now = 150.0  # only what was seen at 60 is within 100 s
    assert recent.select({0, 1}) == [("p0-3", 0), ("p1-b", 1)]
    assert recent.select({2}) == []


def test_a_window_of_zero_remembers_no_one() -> None:
    recent = RecentUsers(window_s=0, cap=10, clock=Clock())
    recent.touch([("u", 0)])
    assert recent.select({0}) == []


def test_pace_keeps_chunks_small_and_never_bursts_to_catch_up() -> None:
    assert [Pace.for_rate(r).size for r in (0.5, 4.0, 100.0, 10_000.0)] == [1, 1, 25, MAX_CHUNK]
    pace = Pace.for_rate(100.0)
    assert pace.pause_after(25, 0.0) == pytest.approx(0.25)
    assert pace.pause_after(25, 0.1) == pytest.approx(0.15)
    assert pace.pause_after(25, 3.0) == 0.0  # a slow chunk: no pause, and no debt either
    assert pace.pause_after(0, 0.0) == 0.0
    users = [(f"u{i}", i % 3) for i in range(60)]
    chunks = pace.chunks(users)
    assert [len(c) for c in chunks] == [25, 25, 10]
    assert [u for c in chunks for u in c] == users
    with pytest.raises(ValueError):
        Pace.for_rate(0.0)


class FakeSide:
    """The user side as a refresh sees it: the recent users, and a refresh that records."""

    def __init__(self, recent: RecentUsers, clock: Clock, cost_s: float = 0.01) -> None:
        self.recent = recent
        self.clock = clock
        self.cost_s = cost_s
        self.chunks: list[list[str]] = []
        self.fail = False

    async def refresh(self, users: Sequence[str]) -> int:
        if self.fail:
            raise RuntimeError("scorer bug")
        self.chunks.append(list(users))
        self.clock.now += self.cost_s
        await asyncio.sleep(0)
        return len(users) - 1  # one list was newer each time


def _refresher(side: FakeSide, owned: set[int], rate: float) -> tuple[Refresher, list[float]]:
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        side.clock.now += seconds
        await asyncio.sleep(0)

    return Refresher(side, lambda: owned, Pace.for_rate(rate), side.clock, sleep), pauses


def test_a_run_refreshes_the_owned_partitions_users_at_the_rate() -> None:
    clock = Clock()
    recent = RecentUsers(window_s=3600, cap=1000, clock=clock)
    recent.touch([(f"a{i}", 0) for i in range(30)] + [(f"b{i}", 1) for i in range(30)])
    side = FakeSide(recent, clock)
    owned = {0}
    refresher, pauses = _refresher(side, owned, rate=40.0)  # chunks of 10

    async def scenario():
        return await refresher.start("v2")

    run = asyncio.run(scenario())
    assert [len(c) for c in side.chunks] == [10, 10, 10]
    assert {u for c in side.chunks for u in c} == {f"a{i}" for i in range(30)}
    assert (run.version, run.users, run.scored, run.stored) == ("v2", 30, 30, 27)
    assert not run.superseded
    # each chunk of 10 took 0.01 s, and the pause makes it 10 / 40 s
    assert pauses == pytest.approx([0.24, 0.24, 0.24])
    assert clock.now == pytest.approx(0.75)


def test_a_partition_lost_during_a_run_is_left_to_its_new_owner() -> None:
    clock = Clock()
    recent = RecentUsers(window_s=3600, cap=1000, clock=clock)
    recent.touch([("a0", 0), ("b0", 1), ("a1", 0), ("b1", 1)])
    side = FakeSide(recent, clock)
    owned = {0, 1}
    refresher, _ = _refresher(side, owned, rate=4.0)  # one user per chunk

    async def scenario():
        task = refresher.start("v2")
        while not side.chunks:
            await asyncio.sleep(0)
        owned.discard(1)  # a rebalance hands partition 1 over
        return await task

    run = asyncio.run(scenario())
    assert side.chunks[0] in (["a0"], ["b0"], ["a1"], ["b1"])
    assert all(u.startswith("a") for c in side.chunks[1:] for u in c)
    assert run.users == 4 and run.scored == len(side.chunks) < 4


def test_a_newer_swap_supersedes_the_run_in_progress() -> None:
    clock = Clock()
    recent = RecentUsers(window_s=3600, cap=1000, clock=clock)
    recent.touch([(f"u{i}", 0) for i in range(6)])
    side = FakeSide(recent, clock)
    refresher, _ = _refresher(side, {0}, rate=8.0)  # chunks of 2

    async def scenario():
        first = refresher.start("v2")
        while not side.chunks:
            await asyncio.sleep(0)
        second = refresher.start("v3")
        return await first, await second

    old, new = asyncio.run(scenario())
    assert old.superseded and old.version == "v2" and old.scored < 6
    assert not new.superseded and (new.version, new.scored) == ("v3", 6)


def test_a_failing_chunk_ends_the_run_and_nothing_is_left_running() -> None:
    clock = Clock()
    recent = RecentUsers(window_s=3600, cap=1000, clock=clock)
    recent.touch([("u", 0)])
    side = FakeSide(recent, clock)
    side.fail = True
    refresher, _ = _refresher(side, {0}, rate=10.0)

    async def scenario():
        return await refresher.start("v2")

    assert asyncio.run(scenario()) is None


class Session:
    """A session model: recommends the vocabulary's items outside each prefix, in order."""

    def __init__(self, version: str, vocabulary: Sequence[str]) -> None:
        self.version = version
        self.vocabulary = list(vocabulary)

    def recommend(self, prefixes, k, exclude):
        return [[(i, 1.0) for i in self.vocabulary if i not in set(skip)][:k] for skip in exclude]


class Slot:
    def __init__(self) -> None:
        self.model: Session | None = None

    def current(self) -> Session | None:
        return self.model

    @property
    def version(self) -> str | None:
        return self.model.version if self.model is not None else None


def _path(cache: MemoryCache, slot: Slot) -> tuple[LivePath, OnlineScorer]:
    scorer = OnlineScorer(cache, slot, partitions=1, session_slots=2)
    path = LivePath(cache, scorer, top_n=4, half_life_s=3600, rec_ttl_s=60, history_len=10)
    return path, scorer


def test_refresh_rewrites_older_lists_with_the_new_session_model_and_nothing_else() -> None:
    cache, slot = MemoryCache(), Slot()
    norms = {"a": 1.0, "b": 1.0, "x": 1.0, "y": 1.0}
    cache.publish_neighbors({"a": [("x", 0.9)], "b": [("y", 0.8)]}, norms)
    cache.update_trending([("t", 1.0, T0)], 3600.0, T0, 10)
    path, scorer = _path(cache, slot)
    old = UserRecs("old", (Recommendation("x", 1.0, "because you viewed a"),), {"cf": "v"}, 1000)
    newer = UserRecs("newer", (Recommendation("y", 1.0, "r"),), {"cf": "v"}, 9_000)
    cache.write_batch([old, newer], ttl_s=60, stats={})
    slot.model = Session("s2", ["s1", "s2", "a", "b"])
    trending_before = scorer._trending_before

    histories = {"old": ["a"], "newer": ["b"], "gone": ["a"]}
    stored = path.refresh(histories, read_at_ms=5_000, excluded={"old": ["s1"]})

    assert stored == 1 and cache.get_stats()["refreshed"] == 1
    fresh = cache.get_recs("old")
    assert fresh.model_versions["session"] == "s2" and fresh.recent == ("a",)
    assert fresh.computed_at > old.computed_at
    items = [(r.item_id, r.reason) for r in fresh.items]
    assert ("s2", SESSION_REASON) in items and "x" in dict(items)
    assert not {"a", "s1"} & set(dict(items))  # her history and her exclusions stay out
    assert cache.get_recs("newer") == newer  # computed after her history was read: kept
    assert cache.get_recs("gone") is None  # no list to refresh (expired or forgotten)
    assert scorer._trending_before is trending_before  # the next batch learns as before
    # Read later, "newer" is older than the read: refreshed; then every list names s2 already.
    later = fresh.computed_at + 1
    assert path.refresh(histories, read_at_ms=later) == 1
    assert cache.get_recs("newer").model_versions["session"] == "s2"
    assert path.refresh(histories, read_at_ms=later) == 0
    assert cache.get_stats()["refreshed"] == 2


def test_refresh_stores_nothing_when_the_session_model_did_not_serve() -> None:
    cache, slot = MemoryCache(), Slot()
    cache.update_trending([("t", 1.0, T0)], 3600.0, T0, 10)
    path, _ = _path(cache, slot)
    cache.write_batch([UserRecs("u", (), {"cf": "v"}, 1000)], ttl_s=60, stats={})
    assert path.refresh({"u": ["a"]}, read_at_ms=5_000) == 0  # no model serves
    assert cache.get_recs("u").computed_at == 1000
