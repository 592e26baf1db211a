"""The read API's in-memory store and the helper that runs a scenario against the app.

Fixtures rather than imports: the suite runs with ``--import-mode=importlib``, where one test
module cannot import another. The fake keeps ``ReadStore``'s signatures, so the routes run
unchanged against it; the app runs in aiohttp's in-process test server (loopback only).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
from aiohttp.test_utils import TestClient as AioClient
from aiohttp.test_utils import TestServer as AioServer

from models.catalog import ItemRecord
from stream_app.api.journals import (
    DeadLetterEntry,
    ModelDecision,
    parse_dead_letters,
    parse_model_decisions,
)
from stream_app.api.server import make_app
from stream_app.api.store import CachedRecs, CatalogView
from stream_app.cache.base import CacheUnavailable, Recommendation, UserRecs
from stream_app.cache.telemetry import RankerStats, TelemetrySnapshot, ranker_stats

DEAD_LETTER = (
    b'{"reason": "not valid UTF-8 JSON", "topic": "events", "partition": 2, "offset": 41,'
    b' "dead_at_ms": 1700000000500, "payload_size": 9, "preview": "<b>x</b>"}'
)
DECISION = (
    b'{"at_ms": 1700000000000, "version": "s-8", "accepted": false,'
    b' "reason": "HitRate@10 0.08 below the serving model\'s 0.11", "trigger": "poll"}'
)


class FakeStore:
    """``ReadStore`` over dicts; ``down`` makes every call raise ``CacheUnavailable``."""

    def __init__(self, down: bool = False) -> None:
        self.down = down
        self.rankers_down = False
        self.closed = False
        #: partition -> raw stored state, as the Redis MGET would return it
        self.ranker_raw: dict[int, bytes] = {}
        self.ranker_reads: list[list[int]] = []
        self.snapshot_reads = 0
        self.recs = {
            "u1": CachedRecs(
                UserRecs(
                    "u1",
                    tuple(
                        Recommendation(f"i{j}", 1.0 / (j + 1), "people like you") for j in range(20)
                    ),
                    {"cf": "cf-v3", "session": "s-7"},
                    1_700_000_000_000,
                ),
                recent=("h1", "h2", "h3"),
            )
        }
        self.trending_items = [("t1", 9.0), ("t2", 4.0), ("t3", 1.0)]
        self.neighbours = {"i1": [("i2", 0.9), ("i3", 0.5)]}
        self.successor_lists = {"i1": [("i4", 0.6), ("i2", 0.3)], "i9": [("i1", 1.0)]}
        #: the catalog: item records, hidden ids, and the ids of each catalog read
        self.meta: dict[str, ItemRecord] = {}
        self.hidden: set[str] = set()
        self.catalog_reads: list[list[str]] = []
        #: how many trending items each trending read asked for (each one round trip)
        self.trending_reads: list[int] = []
        #: raw journal entries, newest first, as LRANGE returns them
        self.dead_raw: list[bytes] = [DEAD_LETTER, b"{damaged"]
        self.decisions_raw: list[bytes] = [DECISION]
        self.snap = TelemetrySnapshot(
            events=10,
            dlq=1,
            stats={"events": 10, "dlq": 1},
            hits=3,
            trials=10,
            rr=1.5,
            seq_hits=2,
            seq_trials=5,
            seq_rr=1.25,
            freshness_counts=(0, 30, 40, 0, 0, 0, 0, 0, 29, 1, 0),
            freshness_sum_ms=12_345.0,
            workers={"w1": {"session": "s-7"}},
            workers_seen_ms={"w1": int(time.time() * 1000)},
        )

    def _check(self) -> None:
        if self.down:
            raise CacheUnavailable("redis unavailable: connection refused")

    async def get_recs(self, user_id: str) -> CachedRecs | None:
        self._check()
        return self.recs.get(user_id)

    async def trending_catalog(
        self, n: int, now_ms: int
    ) -> tuple[list[tuple[str, float]], CatalogView]:
        self._check()
        self.trending_reads.append(n)
        head = self.trending_items[:n]
        return head, self._view([item for item, _ in head])

    async def trending_rank(self, item_id: str, now_ms: int) -> tuple[int, float] | None:
        self._check()
        for rank, (item, score) in enumerate(self.trending_items, start=1):
            if item == item_id:
                return rank, score
        return None

    async def neighbors(self, item_id: str, n: int) -> list[tuple[str, float]] | None:
        self._check()
        found = self.neighbours.get(item_id)
        return None if found is None else found[:n]

    async def successors(self, item_id: str, n: int) -> list[tuple[str, float]] | None:
        self._check()
        found = self.successor_lists.get(item_id)
        return None if found is None else found[:n]

    async def catalog(self, item_ids: Sequence[str]) -> CatalogView:
        self._check()
        self.catalog_reads.append(list(item_ids))
        return self._view(item_ids)

    def _view(self, item_ids: Sequence[str]) -> CatalogView:
        meta = {i: self.meta[i] for i in item_ids if i in self.meta}
        return CatalogView(meta, frozenset(self.hidden & set(item_ids)))

    async def dead_letters(self, n: int) -> list[DeadLetterEntry]:
        self._check()
        return parse_dead_letters(self.dead_raw[:n])

    async def model_decisions(self, n: int) -> list[ModelDecision]:
        self._check()
        return parse_model_decisions(self.decisions_raw[:n])

    async def ping(self) -> bool:
        self._check()
        return True

    async def snapshot(self) -> TelemetrySnapshot:
        self.snapshot_reads += 1
        self._check()
        return self.snap

    async def ranker_states(self, partitions: Sequence[int]) -> list[RankerStats]:
        self._check()
        if self.rankers_down:
            raise CacheUnavailable("redis unavailable: connection reset")
        parts = list(partitions)
        self.ranker_reads.append(parts)
        return ranker_stats(parts, [self.ranker_raw.get(p) for p in parts])

    async def close(self) -> None:
        self.closed = True


Scenario = Callable[[AioClient], Awaitable[Any]]


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def call() -> Callable[..., Any]:
    """``call(store, scenario, partitions=0, **make_app_options)``: the scenario's result
    against the app over ``store``; the sampler is off unless the options turn it on."""

    def run(store: FakeStore, scenario: Scenario, partitions: int = 0, **options: Any) -> Any:
        options.setdefault("sampling", False)

        async def main() -> Any:
            app = make_app(store, ranker_partitions=partitions, **options)  # type: ignore[arg-type]
            async with AioClient(AioServer(app)) as client:
                return await scenario(client)

        return asyncio.run(main())

    return run
