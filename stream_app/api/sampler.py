"""The dashboard's recent history: a task of the API process that reads the telemetry snapshot
(and the consumer lag) every few seconds and keeps the last minutes in a bounded window.

Why server-side: the counters in Redis are totals, and a rate needs two readings apart in time;
the API holds them so a page opened now shows the last ten minutes at once. Each replica keeps
its own window (nothing is written back). Redis or Kafka down gives a sample with the gaps
marked, never a stopped task, and one log line per outage rather than one per sample.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from stream_app.api.lag import LagProbe
from stream_app.api.store import ReadStore
from stream_app.cache.base import CacheUnavailable
from stream_app.cache.telemetry import TelemetrySnapshot

log = logging.getLogger(__name__)

DEFAULT_SAMPLE_S = 2.0


DEFAULT_WINDOW_S = 600.0


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading; ``None`` where it could not be read (Redis down, no trials yet...)."""

    t_ms: int
    redis_up: bool
    events: int | None = None
    dlq: int | None = None
    lag_total: int | None = None
    hit_rate_at_10: float | None = None
    hit_rate_at_10_cached: float | None = None
    mrr_at_10: float | None = None
    mrr_at_10_cached: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None


def lag_total(lag: Mapping[str, int] | None) -> int | None:
    """The group's lag over its topics; None when unknown (no probe, Kafka unreachable).

    >>> lag_total({"events": 5, "deltas": 2}), lag_total({}), lag_total(None)
    (7, None, None)
    """
    return sum(lag.values()) if lag else None


def sample_of(t_ms: int, snap: TelemetrySnapshot | None, lag: Mapping[str, int] | None) -> Sample:
    """The sample of a snapshot (``None``: Redis down) and a lag reading.

    >>> s = sample_of(5, TelemetrySnapshot(events=9, seq_hits=1, seq_trials=4), {"events": 3})
    >>> s.events, s.hit_rate_at_10, s.hit_rate_at_10_cached, s.lag_total, s.p50_ms
    (9, 0.25, None, 3, None)
    >>> sample_of(5, None, None).redis_up
    False
    """
    if snap is None:
        return Sample(t_ms, redis_up=False, lag_total=lag_total(lag))
    return Sample(
        t_ms,
        redis_up=True,
        events=snap.events,
        dlq=snap.dlq,
        lag_total=lag_total(lag),
        hit_rate_at_10=snap.hit_rate_at_10,
        hit_rate_at_10_cached=snap.hit_rate_at_10_cached,
        mrr_at_10=snap.mrr_at_10,
        mrr_at_10_cached=snap.mrr_at_10_cached,
        p50_ms=snap.freshness_quantile(0.5),
        p99_ms=snap.freshness_quantile(0.99),
    )


def events_per_s(prev: Sample | None, cur: Sample) -> float | None:
    """Events per second between two consecutive samples. None when either has no count, when
    no time passed, or when the counter went backwards (Redis flushed or restored): a reset is
    not a negative rate.

    >>> events_per_s(Sample(1_000, True, events=10), Sample(3_000, True, events=50))
    20.0
    >>> events_per_s(Sample(1_000, True, events=50), Sample(3_000, True, events=4)) is None
    True
    """
    if prev is None or prev.events is None or cur.events is None:
        return None
    dt_s = (cur.t_ms - prev.t_ms) / 1000.0
    if dt_s <= 0 or cur.events < prev.events:
        return None
    return (cur.events - prev.events) / dt_s


def series(samples: Iterable[Sample]) -> list[dict[str, Any]]:
    """The samples as JSON points, oldest first, each with its ``events_per_s`` since the one
    before it (None for the first).

    >>> [p["events_per_s"] for p in series([Sample(0, True, events=0), Sample(2_000, True,
    ...     events=10), Sample(4_000, False), Sample(6_000, True, events=30)])]
    [None, 5.0, None, None]
    """
    points: list[dict[str, Any]] = []
    prev: Sample | None = None
    for sample in samples:
        points.append({**asdict(sample), "events_per_s": events_per_s(prev, sample)})
        prev = sample
    return points


class Sampler:
    """Reads a sample every ``sample_s`` and keeps those of the last ``window_s``.

    The window is bounded twice: by count (``window_s / sample_s`` + 1 samples, so memory is
    fixed) and by age when read (a slow lag read can space samples out).
    """

    def __init__(
        self,
        store: ReadStore,
        lag_probe: LagProbe | None = None,
        sample_s: float = DEFAULT_SAMPLE_S,
        window_s: float = DEFAULT_WINDOW_S,
    ) -> None:
        if sample_s <= 0 or window_s < sample_s:
            raise ValueError("need 0 < sample_s <= window_s")
        self.store = store
        self.lag_probe = lag_probe
        self.sample_s = sample_s
        self.window_s = window_s
        self.samples: deque[Sample] = deque(maxlen=int(window_s / sample_s) + 1)
        #: the lag per topic at the last sample (None: no probe, or nothing read yet)
        self.latest_lag: dict[str, int] | None = None
        self._redis_up = True
        self._failing = False

    def record(self, sample: Sample) -> None:
        self.samples.append(sample)

    def series(self) -> list[dict[str, Any]]:
        """The window as JSON points (:func:`series`), older samples than ``window_s`` before
        the newest left out."""
        if not self.samples:
            return []
        since = self.samples[-1].t_ms - self.window_s * 1000
        return series(s for s in self.samples if s.t_ms >= since)

    async def _snapshot(self) -> TelemetrySnapshot | None:
        try:
            snap = await self.store.snapshot()
        except CacheUnavailable as exc:
            if self._redis_up:
                log.warning("dashboard sampler: %s; sampling on", exc)
            self._redis_up = False
            return None
        if not self._redis_up:
            log.info("dashboard sampler: Redis is back")
        self._redis_up = True
        return snap

    async def _lag(self) -> dict[str, int] | None:
        return None if self.lag_probe is None else await self.lag_probe.lag()

    async def take(self) -> Sample:
        """Read one sample now (the snapshot and the lag side by side)."""
        t_ms = int(time.time() * 1000)
        snap, lag = await asyncio.gather(self._snapshot(), self._lag())
        self.latest_lag = lag
        return sample_of(t_ms, snap, lag)

    async def run(self) -> None:
        """Sample until cancelled."""
        while True:
            try:
                self.record(await self.take())
            except Exception:  # a bug must not end the history: logged once per streak
                if not self._failing:
                    log.exception("dashboard sampler: sample failed; sampling on")
                self._failing = True
            else:
                self._failing = False
            await asyncio.sleep(self.sample_s)
