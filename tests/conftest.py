"""Suite-wide rules.

House rule: a skipped test is a failure, not a pass (an integration test that skips because the
stack is down would otherwise look green). Deselecting with ``-m`` is not skipping and stays
allowed; ``xfail`` is left alone.
"""

from __future__ import annotations

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped tests count as failures in this project: {reason}"


@pytest.fixture
def flaky_cache():
    """A ``MemoryCache`` whose next ``write_batch`` raises ``CacheUnavailable`` once its
    ``fail_next`` is set (a Redis blip), with the real method's signature."""
    from collections.abc import Mapping, Sequence

    from stream_app.cache import CacheUnavailable, MemoryCache, UserRecs

    class FlakyWrites(MemoryCache):
        fail_next = False

        def write_batch(
            self,
            recs: Sequence[UserRecs],
            ttl_s: int,
            stats: Mapping[str, int],
            hwm: tuple[str, Sequence[tuple[int, int]]] | None = None,
            state: Mapping[str, bytes] | None = None,
        ) -> None:
            if self.fail_next:
                self.fail_next = False
                raise CacheUnavailable("timeout")
            super().write_batch(recs, ttl_s, stats, hwm=hwm, state=state)

    return FlakyWrites()
