"""The refresh after a session-model swap: the lists of the users this worker served lately are
recomputed with the new model, paced, in the background, without waiting for their next event.

``RecentUsers`` remembers who (bounded by a window and a cap per partition, in memory: after a
restart the next swap covers the users active since), ``Pace`` spreads the work, ``Refresher``
runs it, one run at a time, a newer swap superseding an older run. Each chunk goes through the
user side (``UserSide.refresh``), between its batches; what a chunk may overwrite:
``RecCache.write_refreshed``. Details: docs/stream.md, "Refresh after a swap".
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

#: The most users one chunk scores: the live path waits for at most one chunk, so it stays
#: small (one session-model inference of this many prefixes).
MAX_CHUNK = 50
#: A chunk holds this share of a second of the rate (at 100 users/s: 25 users every 0.25 s).
CHUNK_S = 0.25


class RecentUsers:
    """The users whose lists were written lately, per user-side partition, most recent last.

    Bounded twice: a user last seen more than ``window_s`` ago is dropped, and past ``cap``
    users in a partition its least recently seen goes. ``window_s`` 0 remembers no one.

    Examples
    --------
    >>> now = [0.0]
    >>> recent = RecentUsers(window_s=60, cap=2, clock=lambda: now[0])
    >>> recent.touch([("a", 0), ("b", 0), ("c", 1)])
    >>> now[0] = 30.0
    >>> recent.touch([("d", 0)])          # partition 0 is over its cap: "a" goes
    >>> recent.select({0, 1})
    [('d', 0), ('b', 0), ('c', 1)]
    >>> now[0] = 70.0                     # "b" and "c" were seen 70 s ago: out of the window
    >>> recent.select({0, 1}), recent.select({1})
    ([('d', 0)], [])
    """

    def __init__(
        self, window_s: float, cap: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_s = window_s
        self.cap = cap
        self.clock = clock
        #: partition -> user -> when last seen (``clock``), least recently seen first
        self._seen: dict[int, OrderedDict[str, float]] = {}

    def touch(self, users: Iterable[tuple[str, int]]) -> None:
        """(user, partition) pairs whose lists were just written."""
        if self.window_s <= 0:
            return
        now = self.clock()
        for user, partition in users:
            seen = self._seen.get(partition)
            if seen is None:
                seen = self._seen[partition] = OrderedDict()
            seen[user] = now
            seen.move_to_end(user)
            if len(seen) > self.cap:
                seen.popitem(last=False)
        for seen in self._seen.values():
            self._expire(seen, now)

    def _expire(self, seen: OrderedDict[str, float], now: float) -> None:
        horizon = now - self.window_s
        while seen and next(iter(seen.values())) < horizon:
            seen.popitem(last=False)

    def select(self, partitions: Collection[int]) -> list[tuple[str, int]]:
        """The (user, partition) pairs of those partitions still in the window, the most
        recently seen first (the likeliest to come back soon are refreshed first; ties, such
        as the users of one batch, by user id)."""
        now = self.clock()
        found: list[tuple[float, str, int]] = []
        for partition in partitions:
            seen = self._seen.get(partition)
            if seen is None:
                continue
            self._expire(seen, now)
            found.extend((at, user, partition) for user, at in seen.items())
        found.sort(key=lambda row: (-row[0], row[1]))
        return [(user, partition) for _, user, partition in found]


@dataclass(frozen=True, slots=True)
class Pace:
    """How a refresh spreads its users: chunks of ``size``, each followed by the pause that
    keeps it at ``rate`` users/s. A chunk slower than its share gets no pause, and the time
    lost is never made up with a burst: the rate is a ceiling.

    >>> pace = Pace.for_rate(100.0)
    >>> pace.size, pace.pause_after(25, 0.05), pace.pause_after(25, 0.4)
    (25, 0.2, 0.0)
    >>> Pace.for_rate(2.0).size, Pace.for_rate(1e6).size
    (1, 50)
    """

    rate: float
    size: int

    @classmethod
    def for_rate(cls, rate: float) -> Pace:
        if not rate > 0:
            raise ValueError(f"refresh rate must be positive, got {rate!r}")
        return cls(rate, max(1, min(MAX_CHUNK, math.floor(rate * CHUNK_S))))

    def pause_after(self, users: int, elapsed_s: float) -> float:
        """Seconds to wait after a chunk of ``users`` that took ``elapsed_s``."""
        return max(0.0, users / self.rate - elapsed_s)

    def chunks(self, users: Sequence[tuple[str, int]]) -> list[Sequence[tuple[str, int]]]:
        """``users`` cut into chunks of at most :attr:`size`, in order.

        >>> Pace(1.0, 2).chunks([("a", 0), ("b", 0), ("c", 1)])
        [[('a', 0), ('b', 0)], [('c', 1)]]
        """
        return [users[i : i + self.size] for i in range(0, len(users), self.size)]


class RefreshSide(Protocol):
    """What a refresh needs of the user side (``UserSide``)."""

    recent: RecentUsers

    def refresh(self, users: Sequence[str]) -> Awaitable[int]:
        """Recompute and store these users' lists; how many were stored."""
        ...


@dataclass(frozen=True, slots=True)
class RefreshRun:
    """What one run did, for its log line and for tests."""

    version: str
    users: int  #: recent users of owned partitions when it began
    scored: int  #: of those, the ones still owned when their chunk came
    stored: int  #: lists written (``stats:refreshed``)
    seconds: float
    superseded: bool = False


class Refresher:
    """Runs the refresh after each swap in a task of the event loop, one run at a time.

    A newer swap supersedes the run in progress between two of its chunks, never inside one: a
    chunk may be scoring in a thread, and a batch must not use the scorer meanwhile.
    ``owned()`` names the user-side partitions this worker holds now (none during a rebalance):
    each chunk keeps only their users, so a partition handed to another worker is left to it.
    """

    def __init__(
        self,
        side: RefreshSide,
        owned: Callable[[], Collection[int]],
        pace: Pace,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        #: the event loop the runs go on (:meth:`start_soon`); the running one if not given
        self.loop = loop
        self.side = side
        self.owned = owned
        self.pace = pace
        self.clock = clock
        self.sleep = sleep
        #: bumped by every :meth:`start`: a run whose number is not the latest stops
        self._generation = 0
        self._task: asyncio.Task[RefreshRun | None] | None = None

    def start(self, version: str) -> asyncio.Task[RefreshRun | None]:
        """Begin refreshing for the session model ``version`` (just swapped in); a run in
        progress stops at its next chunk."""
        self._generation += 1
        self._task = asyncio.get_running_loop().create_task(self.run(version, self._generation))
        return self._task

    def start_soon(self, version: str) -> None:
        """:meth:`start` on the event loop, from any thread (the model slot decides in an
        executor thread)."""
        loop = self.loop or asyncio.get_running_loop()
        loop.call_soon_threadsafe(self.start, version)

    def stop(self) -> None:
        """Cancel the run in progress (the worker is stopping)."""
        self._generation += 1
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def run(self, version: str, generation: int) -> RefreshRun | None:
        """One run: the recent users of the owned partitions, chunk by chunk at the pace.
        None when there was no one to refresh, or when a chunk failed (logged)."""
        began = self.clock()
        users = self.side.recent.select(self.owned())
        if not users:
            log.info("session model %s: no recently active users to refresh", version)
            return None
        scored = stored = 0
        try:
            for chunk in self.pace.chunks(users):
                if generation != self._generation:
                    took = self.clock() - began
                    return _logged(RefreshRun(version, len(users), scored, stored, took, True))
                owned = self.owned()
                mine = [user for user, partition in chunk if partition in owned]
                started = self.clock()
                if mine:
                    stored += await self.side.refresh(mine)
                    scored += len(mine)
                await self.sleep(self.pace.pause_after(len(mine), self.clock() - started))
        except Exception:
            total = len(users)
            log.exception("session model %s: refresh stopped at %d of %d", version, scored, total)
            return None
        return _logged(RefreshRun(version, len(users), scored, stored, self.clock() - began))


def _logged(run: RefreshRun) -> RefreshRun:
    """One log line per run: its users, the lists stored, how long it took."""
    if run.superseded:
        log.info(
            "session model %s: refresh superseded by a newer swap after %.1f s, %d of %d "
            "recently active users' lists stored (%d scored)",
            *(run.version, run.seconds, run.stored, run.users, run.scored),
        )
    else:
        log.info(
            "session model %s: refreshed %d of %d recently active users' lists in %.1f s (%d "
            "scored; the rest were newer, gone, or of partitions no longer owned)",
            *(run.version, run.stored, run.users, run.seconds, run.scored),
        )
    return run
