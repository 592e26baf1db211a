"""What ``/health`` answers: ``ok``, or ``degraded`` (HTTP 503) with the reasons, when Redis is
down, when no worker has reported for ``HEALTH_WORKER_STALE_S``, or when the consumer lag has
only grown over the last ``HEALTH_LAG_WINDOW_S``.

A load balancer or an orchestrator acts on this answer, so it must not say ``ok`` while nothing
consumes: workers report with every batch and, when idle, every ``WORKER_HEARTBEAT_S``. The
lag rule reads the dashboard sampler's window (the API's own lag readings), so a health check
never waits on Kafka.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from stream_app.api.sampler import Sample

#: Lag readings the growth rule needs inside its window before it judges.
MIN_LAG_READINGS = 3


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """The two limits of :func:`verdict` (``Settings.health_worker_stale_s`` and
    ``health_lag_window_s``)."""

    worker_stale_s: float = 30.0
    lag_window_s: float = 60.0


def lag_growing(samples: Sequence[Sample], window_s: float) -> bool:
    """Whether the lag readings of the last ``window_s`` (before the newest sample) never fell
    and ended higher than they began, over at least ``MIN_LAG_READINGS`` readings that span
    most of the window: a group that falls further behind at every reading.

    >>> s = lambda t, lag: Sample(t * 1000, True, lag_total=lag)
    >>> lag_growing([s(0, 5), s(20, 9), s(40, 9), s(60, 30)], 60)
    True
    >>> lag_growing([s(0, 5), s(20, 90), s(40, 9), s(60, 30)], 60)   # it fell once: catching up
    False
    >>> lag_growing([s(50, 5), s(55, 9), s(60, 30)], 60)              # too short a span to say
    False
    """
    if not samples:
        return False
    since = samples[-1].t_ms - window_s * 1000
    readings = [(s.t_ms, s.lag_total) for s in samples if s.t_ms >= since]
    lags = [lag for _, lag in readings if lag is not None]
    times = [t for t, lag in readings if lag is not None]
    if len(lags) < MIN_LAG_READINGS or times[-1] - times[0] < 0.8 * window_s * 1000:
        return False
    return lags[-1] > lags[0] and all(b >= a for a, b in pairwise(lags))


def verdict(
    redis_up: bool,
    newest_report_ms: int | None,
    now_ms: int,
    samples: Sequence[Sample],
    policy: HealthPolicy,
) -> list[str]:
    """The reasons the service is degraded; none means ``ok``.

    >>> verdict(True, 1_000, 11_000, [], HealthPolicy(worker_stale_s=30))
    []
    >>> verdict(True, None, 11_000, [], HealthPolicy())
    ['no worker has reported']
    >>> verdict(False, None, 0, [], HealthPolicy())
    ['redis is down']
    """
    if not redis_up:
        reasons = ["redis is down"]
    elif newest_report_ms is None:
        reasons = ["no worker has reported"]
    elif now_ms - newest_report_ms > policy.worker_stale_s * 1000:
        ago = (now_ms - newest_report_ms) / 1000
        reasons = [f"no worker has reported for {ago:.0f} s (limit {policy.worker_stale_s:g} s)"]
    else:
        reasons = []
    if lag_growing(samples, policy.lag_window_s):
        reasons.append(f"consumer lag grew at every reading for {policy.lag_window_s:g} s")
    return reasons
