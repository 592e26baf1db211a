"""The dashboard sampler: the events/s arithmetic (counter resets included), the bounded window,
and a sampling loop that outlives Redis outages and its own bugs."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from stream_app.api.sampler import Sample, Sampler, events_per_s, series
from stream_app.cache.telemetry import TelemetrySnapshot


def counts(*pairs: tuple[int, int | None]) -> list[Sample]:
    """Samples from ``(t_ms, events)``; ``None`` events: Redis was down."""
    return [Sample(t, redis_up=e is not None, events=e) for t, e in pairs]


def test_events_per_s_is_the_counter_difference_over_the_time_difference() -> None:
    a, b = counts((10_000, 100), (12_500, 600))
    assert events_per_s(a, b) == 200.0
    assert events_per_s(None, b) is None  # the first sample has no rate


def test_a_counter_that_goes_backwards_is_no_rate_not_a_negative_one() -> None:
    a, b = counts((0, 5_000), (2_000, 30))  # Redis flushed between the two
    assert events_per_s(a, b) is None


def test_no_rate_without_both_counts_or_without_time_passing() -> None:
    up, down, same_time = counts((0, 10), (2_000, None), (0, 20))
    assert events_per_s(up, down) is None and events_per_s(down, up) is None
    assert events_per_s(up, same_time) is None


def test_series_rates_follow_the_samples_through_a_reset_and_an_outage() -> None:
    samples = counts(
        (0, 0), (2_000, 40), (4_000, 100), (6_000, 3), (8_000, 23), (10_000, None), (12_000, 43)
    )
    rates = [p["events_per_s"] for p in series(samples)]
    assert rates == [None, 20.0, 30.0, None, 10.0, None, None]
    point = series(samples)[1]
    assert point["t_ms"] == 2_000 and point["events"] == 40 and point["redis_up"] is True


class StaticStore:
    """Only what the sampler reads: a snapshot, or an outage, or a bug."""

    def __init__(self) -> None:
        self.mode = "up"
        self.reads = 0

    async def snapshot(self) -> TelemetrySnapshot:
        from stream_app.cache.base import CacheUnavailable

        self.reads += 1
        if self.mode == "down":
            raise CacheUnavailable("redis unavailable: timeout")
        if self.mode == "bug":
            raise KeyError("unexpected")
        return TelemetrySnapshot(events=self.reads)


def test_the_window_is_bounded_by_count_and_by_age() -> None:
    sampler = Sampler(StaticStore(), sample_s=2.0, window_s=10.0)  # type: ignore[arg-type]
    for t in range(0, 60_000, 2_000):
        sampler.record(Sample(t, True, events=t))
    assert len(sampler.samples) == 6  # 10 s / 2 s, and the sample at the window's start
    assert [p["t_ms"] for p in sampler.series()] == list(range(48_000, 60_000, 2_000))
    # Samples spaced out (a slow read) still show only the last 10 s.
    slow = Sampler(StaticStore(), sample_s=2.0, window_s=10.0)  # type: ignore[arg-type]
    for t in (0, 7_000, 14_000, 21_000):
        slow.record(Sample(t, True, events=t))
    assert [p["t_ms"] for p in slow.series()] == [14_000, 21_000]
    assert Sampler(StaticStore()).series() == []  # type: ignore[arg-type]


def test_a_window_shorter_than_a_sample_is_refused() -> None:
    with pytest.raises(ValueError, match="sample_s"):
        Sampler(StaticStore(), sample_s=5.0, window_s=1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sample_s"):
        Sampler(StaticStore(), sample_s=0.0)  # type: ignore[arg-type]


def test_take_reads_redis_down_as_a_gap_and_says_so_once_per_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = StaticStore()
    sampler = Sampler(store, sample_s=1.0)  # type: ignore[arg-type]

    async def takes(mode: str, n: int) -> list[Sample]:
        store.mode = mode
        return [await sampler.take() for _ in range(n)]

    async def main() -> list[Sample]:
        return [*await takes("up", 1), *await takes("down", 3), *await takes("up", 1)]

    with caplog.at_level(logging.INFO, logger="stream_app.api.sampler"):
        got = asyncio.run(main())
    assert [s.redis_up for s in got] == [True, False, False, False, True]
    assert got[1].events is None and got[4].events == 5
    levels = [r.levelname for r in caplog.records if r.name == "stream_app.api.sampler"]
    assert levels == ["WARNING", "INFO"]  # down once, back once


def test_the_loop_outlives_a_bug_and_logs_it_once(caplog: pytest.LogCaptureFixture) -> None:
    store = StaticStore()
    store.mode = "bug"
    sampler = Sampler(store, sample_s=0.01, window_s=1.0)  # type: ignore[arg-type]

    async def main() -> Any:
        task = asyncio.create_task(sampler.run())
        await asyncio.sleep(0.1)
        store.mode = "up"
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    with caplog.at_level(logging.INFO, logger="stream_app.api.sampler"):
        asyncio.run(main())
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and store.reads >= 5
    assert sampler.samples and sampler.samples[-1].redis_up  # sampling resumed
