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
