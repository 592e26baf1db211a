"""The dashboard in a real browser: Debian's Chromium, driven by Playwright, on the real stack.

A worker and ``streamrec api`` run as subprocesses; events (a few malformed) go through Kafka.
The page must count what the worker counted, show the figures ``/metrics`` shows at the same
moment, list a user's recommendations in the order Redis holds them, and log no console error.
Its screenshot is left in ``build/test-artifacts/`` (``make browser`` installs Chromium).
"""

from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from stream_app.cache.base import UserRecs
from stream_app.cache.keys import CacheKeys
from stream_app.settings import Settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "build" / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: Chromium as root on a machine with no route out: no sandbox, no background connections.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EVENTS = 3_000
MALFORMED = 7
#: The page's figures and the ``/metrics`` gauges they mirror.
FIGURES = {
    "#events-total": "streamrec_events_total",
    "#dlq-total": "streamrec_dlq_total",
    "#hit-rate-seq": "streamrec_online_hit_rate_at_10",
    "#hit-rate-cached": "streamrec_online_hit_rate_at_10_cached",
    "#mrr-seq": "streamrec_online_mrr_at_10",
    "#mrr-cached": "streamrec_online_mrr_at_10_cached",
    "#freshness-p50": "streamrec_freshness_p50_ms",
    "#freshness-p99": "streamrec_freshness_p99_ms",
    "#workers": "streamrec_workers",
}


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read()


def metric_values(text: str) -> dict[str, float]:
    """``name value`` lines of a Prometheus exposition without labels."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def same_figure(page_value: str, metric: float) -> bool:
    """A page figure (raw number, or empty for none) against the gauge: /metrics writes a
    rate without trials as 0 and a quantile without samples as NaN."""
    if page_value == "":
        return metric == 0.0 or math.isnan(metric)
    return math.isclose(float(page_value), metric, rel_tol=1e-9, abs_tol=1e-12)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def api(
    settings: Settings, env_for: Callable[[Settings], dict[str, str]], tmp_path: Path
) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "api.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream_app.cli", "api", "--port", str(port)],
        cwd=REPO,
        env=env_for(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()


def produce(settings: Settings, env: dict[str, str]) -> None:
    subprocess.run(
        [
            *(sys.executable, "-m", "stream_app.cli", "produce", "--generate", str(EVENTS)),
            *("--invalid", str(MALFORMED), "--no-progress"),
        ],
        cwd=REPO,
        env=env,
        check=True,
        timeout=120,
    )


def answers(url: str) -> bool:
    try:
        get(url + "/health")
    except (urllib.error.URLError, OSError):
        return False
    return True


def test_the_dashboard_shows_what_the_worker_wrote(
    settings: Settings,
    start_worker: Callable[[Settings], Any],
    wait_for: Callable[..., None],
    env_for: Callable[[Settings], dict[str, str]],
    api: str,
) -> None:
    from playwright.sync_api import sync_playwright

    worker = start_worker(settings)
    client = redis.Redis.from_url(settings.redis_url)
    keys = CacheKeys(settings.redis_key_prefix)
    wait_for(lambda: answers(api), 60, "the API", lambda: "")
    produce(settings, env_for(settings))

    def counted() -> int:
        return int(client.get(keys.stat("events")) or 0)

    wait_for(lambda: counted() == EVENTS, 180, f"{EVENTS} events counted", worker.log_tail)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(api + "/")
            page.wait_for_function(
                "n => document.querySelector('#events-total')?.dataset.value === String(n)",
                arg=counted(),
                timeout=20_000,
            )
            assert page.text_content("#status") == "live"
            check_figures(page, api)
            check_user(page, client, keys)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        finally:
            browser.close()
    assert errors == [], f"console errors: {errors}"
    assert int(client.get(keys.stat("dlq")) or 0) == MALFORMED
    worker.assert_alive()


def check_figures(page: Any, api: str) -> None:
    """The page's figures against ``/metrics`` read right after them (the stream is idle: the
    page's next poll reads the same numbers)."""
    page.wait_for_timeout(1_500)  # one more poll after the last batch's telemetry
    shown = {sel: page.get_attribute(sel, "data-value") for sel in FIGURES}
    metrics = metric_values(get(api + "/metrics").decode())
    for selector, name in FIGURES.items():
        assert shown[selector] is not None, f"{selector} has no data-value"
        page_value = shown[selector]
        assert same_figure(page_value, metrics[name]), (selector, page_value, metrics[name])


def check_user(page: Any, client: redis.Redis, keys: CacheKeys) -> None:
    """A user's list on the page, in order, equals her list in Redis."""
    key = next(client.scan_iter(match=keys.recs_pattern, count=1000))
    user = keys.user_from_recs_key(key.decode())
    cached = UserRecs.from_json(client.get(key))
    page.fill("#user-input", user)
    page.click("#user-go")
    page.wait_for_selector("#user-recs li[data-item-id]")
    shown = page.eval_on_selector_all(
        "#user-recs li[data-item-id]", "items => items.map(li => li.dataset.itemId)"
    )
    assert shown == [r.item_id for r in cached.items][: len(shown)]
    assert len(shown) == min(len(cached.items), 20)
    recent = page.eval_on_selector_all(
        "#user-recent li[data-item-id]", "items => items.map(li => li.dataset.itemId)"
    )
    assert recent == list(json.loads(client.get(key)).get("recent", []))
    assert recent, "the user's recent history is shown"
