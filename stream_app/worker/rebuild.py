"""Redis losing its data, noticed and repaired from the worker's tables (``CacheGuard``).

The keys belong to a generation: the token in ``CacheKeys.generation``, created by the first
worker that finds none. An emptied Redis has no marker, so the next check creates a new token
and every worker rebuilds what its tables hold for the partitions it owns, in stages (items'
norms, then their lists and trending seeds, then active users' lists). Each stage marks its
partitions done under the token: no worker redoes another's, a stage waits (at most
``rebuild_wait_s``) for the previous one on every partition, and a partition's new owner
rebuilds what its old one had not. Details: docs/stream.md, "Redis lost its data".
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from stream_app.cache.base import RecCache

log = logging.getLogger(__name__)

#: First and longest pause between two tries of a batch held while Redis is down.
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0
#: Rows or users per step of a rebuild (one Redis round trip each).
REBUILD_CHUNK = 1000
#: The stages, in order: a list's cosines need every item's norm, a user's list the lists.
STAGES = ("norms", "items", "users")

#: A stage's work on the partitions it is given; returns how many keys it wrote.
Step = Callable[[list[int]], Awaitable[int]]


def new_token(now_ms: int) -> str:
    """A generation token: its creation time (ms), then random hex (two workers that create
    one in the same millisecond still differ; the marker keeps whichever came first).

    >>> new_token(1700000000000)[:14]
    '1700000000000-'
    """
    return f"{now_ms}-{secrets.token_hex(4)}"


def token_age_s(token: str, now_ms: int) -> float:
    """Seconds since ``token`` was created (infinite for a token of another form).

    >>> token_age_s("1000-ab", 3500), token_age_s("oops", 0)
    (2.5, inf)
    """
    head = token.split("-", 1)[0]
    return (now_ms - int(head)) / 1000 if head.isdigit() else float("inf")


def pending(fields: Mapping[str, str], stage: str, owned: Sequence[int]) -> list[int]:
    """The ``owned`` partitions whose ``stage`` was not rebuilt under the marker's token.

    >>> pending({"token": "t", "items:0": "t", "items:1": "old"}, "items", [0, 1, 2])
    [1, 2]
    """
    token = fields.get("token")
    return [p for p in owned if fields.get(f"{stage}:{p}") != token]


class CacheGuard:
    """Checks the generation marker and runs the registered stages (:meth:`check`).

    Examples
    --------
    >>> from stream_app.cache import MemoryCache
    >>> guard, done = CacheGuard(MemoryCache(), partitions=1, wait_s=30.0), []
    >>> async def step(parts):
    ...     done.append(parts)
    ...     return 5
    >>> for stage in STAGES:
    ...     guard.register(stage, step)
    >>> owned = dict.fromkeys(STAGES, [0])
    >>> asyncio.run(guard.check(owned)), asyncio.run(guard.check(owned)), done
    ({'norms': 5, 'items': 5, 'users': 5}, {}, [[0], [0], [0]])
    """

    def __init__(
        self,
        store: RecCache,
        partitions: int,
        wait_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.partitions = partitions
        self.wait_s = wait_s
        self.clock = clock
        self.steps: dict[str, Step] = {}
        self._checking = asyncio.Lock()

    def register(self, stage: str, step: Step) -> None:
        """``step`` rebuilds ``stage`` (one of :data:`STAGES`) for the partitions it is given."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; known: {', '.join(STAGES)}")
        self.steps[stage] = step

    async def check(self, owned: Mapping[str, Sequence[int]]) -> dict[str, int]:
        """One look at the marker; ``owned``: stage -> the partitions this worker owns for it.
        Runs each stage on the owned partitions not rebuilt under the current token, once the
        stage before it is done on every partition (or the token is ``wait_s`` old); returns
        stage -> keys written. Raises ``CacheUnavailable``: the next check tries again."""
        if self._checking.locked():
            return {}
        async with self._checking:
            now_ms = int(self.clock() * 1000)
            candidate = new_token(now_ms)
            fields = await asyncio.to_thread(self.store.generation, candidate)
            if fields["token"] == candidate:
                log.warning(
                    "Redis holds no generation marker (it is new or lost its data): "
                    "rebuilding what this worker owns, generation %s",
                    candidate,
                )
            return await self._stages(fields, owned, candidate, now_ms)

    async def _stages(
        self,
        fields: dict[str, str],
        owned: Mapping[str, Sequence[int]],
        candidate: str,
        now_ms: int,
    ) -> dict[str, int]:
        token, done = fields["token"], {}
        for previous, stage in zip((None, *STAGES), STAGES, strict=False):
            step, mine = self.steps.get(stage), pending(fields, stage, owned.get(stage, ()))
            if step is None or not mine:
                continue
            waiting = previous is not None and pending(fields, previous, range(self.partitions))
            if waiting and token_age_s(token, now_ms) < self.wait_s:
                break  # another worker's earlier stage is not done yet: next check
            started = time.monotonic()
            done[stage] = await step(mine)
            names = [f"{stage}:{p}" for p in mine]
            if not await asyncio.to_thread(self.store.mark_rebuilt, token, names):
                log.warning("the generation marker changed during the rebuild: starting over")
                break
            log.info(
                "rebuilt %s of partitions %s: %d keys in %.2f s (generation %s)",
                stage, mine, done[stage], time.monotonic() - started, token,
            )  # fmt: skip
            fields = await asyncio.to_thread(self.store.generation, candidate)
            if fields["token"] != token:
                break
        return done
