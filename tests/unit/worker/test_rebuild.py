"""The generation marker's logic (``CacheGuard``) and the live path's rebuild, on the in-memory
backend: when a rebuild runs, which partitions it covers, how workers wait for one another."""

from __future__ import annotations

import asyncio

from models.events import Interaction
from models.online.stream import StreamRanker
from stream_app.cache import CacheKeys, MemoryCache
from stream_app.worker.live_path import LivePath
from stream_app.worker.online_scorer import OnlineScorer
from stream_app.worker.rebuild import STAGES, CacheGuard

T0 = 1_700_000_000_000


def _owned(partitions: list[int]) -> dict[str, list[int]]:
    return {stage: list(partitions) for stage in STAGES}


def _guard(cache: MemoryCache, calls: list[tuple[str, list[int]]], now_s: list[float]):
    guard = CacheGuard(cache, partitions=2, wait_s=30.0, clock=lambda: now_s[0])
    for stage in STAGES:

        async def step(parts: list[int], stage: str = stage) -> int:
            calls.append((stage, parts))
            return len(parts)

        guard.register(stage, step)
    return guard


def test_a_kept_marker_rebuilds_nothing_and_a_lost_one_rebuilds_every_stage_once():
    cache, calls, now = MemoryCache(), [], [T0 / 1000]
    guard = _guard(cache, calls, now)
    owned = _owned([0, 1])
    asyncio.run(guard.check(owned))  # new Redis: one rebuild of (empty) tables
    assert calls == [("norms", [0, 1]), ("items", [0, 1]), ("users", [0, 1])]
    calls.clear()
    assert asyncio.run(guard.check(owned)) == {} and calls == []
    cache.drop_generation()  # what an emptied Redis looks like
    asyncio.run(guard.check(owned))
    assert [stage for stage, _ in calls] == list(STAGES)


def test_a_stage_waits_for_the_previous_one_on_other_workers_partitions_then_goes_on():
    cache, calls, now = MemoryCache(), [], [T0 / 1000]
    mine = _guard(cache, calls, now)  # owns partition 0; partition 1 is another worker's
    asyncio.run(mine.check(_owned([0])))
    assert calls == [("norms", [0])]  # partition 1's norms are not there yet
    now[0] += 5
    asyncio.run(mine.check(_owned([0])))
    assert calls == [("norms", [0])]
    other: list[tuple[str, list[int]]] = []
    asyncio.run(_guard(cache, other, now).check(_owned([1])))
    assert other == [("norms", [1]), ("items", [1])]  # waits for partition 0's lists
    asyncio.run(mine.check(_owned([0])))
    assert calls[1:] == [("items", [0]), ("users", [0])]
    now[0] += 60  # past wait_s: a stage goes on without a partition nobody rebuilt
    lonely: list[tuple[str, list[int]]] = []
    cache.drop_generation()
    asyncio.run(_guard(cache, lonely, [now[0]]).check(_owned([0])))
    assert lonely == [("norms", [0])]
    asyncio.run(_guard(cache, lonely, [now[0] + 31]).check(_owned([0])))
    assert lonely == [("norms", [0]), ("items", [0]), ("users", [0])]


def test_a_new_owner_rebuilds_a_partition_its_old_owner_had_not():
    cache, calls, now = MemoryCache(), [], [T0 / 1000]
    guard = _guard(cache, calls, now)
    asyncio.run(guard.check(_owned([0])))
    now[0] += 60
    asyncio.run(guard.check(_owned([0])))
    calls.clear()
    asyncio.run(guard.check(_owned([0, 1])))  # gained partition 1
    assert calls == [("norms", [1]), ("items", [1]), ("users", [1])]


def test_the_live_path_rebuild_writes_lists_and_the_rankers_it_holds_and_counts_nothing():
    cache = MemoryCache()
    lists = {"a": [("x", 0.9), ("y", 0.5), ("z", 0.2)]}
    cache.publish_neighbors(lists, {"a": 1.0, "x": 1.0, "y": 1.0, "z": 1.0})
    scorer = OnlineScorer(cache, partitions=1)
    path = LivePath(cache, scorer, top_n=3, half_life_s=3600, rec_ttl_s=60, history_len=10)
    events = [Interaction("u", "x", "view", T0), Interaction("v", "a", "view", T0)]
    path.process(events, {"u": ["a", "x"], "v": ["a"]}, hwm=("ev", [(0, 1), (0, 2)]),
                 before={"u": ["a"], "v": []})  # fmt: skip
    key = CacheKeys().ranker(0)
    learned = StreamRanker.from_json(cache.read_state([key])[key]).n_updates
    assert learned > 0
    emptied = MemoryCache()  # Redis lost its data; the scorer's ranker lives on in memory
    emptied.publish_neighbors(lists, {"a": 1.0, "x": 1.0, "y": 1.0, "z": 1.0})
    path.cache = scorer.cache = emptied
    assert path.rebuild({"v": ["a"]}, None, [0], T0) == 1
    assert [r.item_id for r in emptied.get_recs("v").items] == ["x", "y", "z"]
    assert emptied.get_recs("v").model_versions["ranker"].endswith(f"@p0:{learned}")
    assert StreamRanker.from_json(emptied.read_state([key])[key]).n_updates == learned
    assert emptied.get_stats()["events"] == 0


def test_marks_only_go_up_and_trending_seeds_never_add_to_a_live_score():
    cache = MemoryCache()
    cache.raise_marks("ev", {0: 5, 1: 3})
    cache.raise_marks("ev", {0: 4, 2: 1})
    assert cache.read_hwm("ev") == {0: 5, 1: 3, 2: 1}
    cache.update_trending([("a", 2.0, T0)], 3600.0, T0, 5)
    top = cache.update_trending([("a", 9.0, T0), ("b", 1.0, T0)], 3600.0, T0, 5, absent_only=True)
    assert top == [("a", 2.0), ("b", 1.0)]
