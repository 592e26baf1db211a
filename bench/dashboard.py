"""First load of the dashboard in a real browser, with 100k events processed (issue 22).

Starts a worker and ``streamrec api`` on the real stack (a Redis DB and topics of the run's own),
replays MovieLens-100K through Kafka until the worker has counted every event, then opens the
page ``--loads`` times in Debian's Chromium, each in a fresh browser context (nothing cached),
and times navigation start to the first poll rendered (``#status`` "live", every figure filled).
Baseline, same browser and run: loading ``/health`` (one small JSON document, no script).
Writes ``bench/results/dashboard.json``; ``--screenshot PATH`` also saves the page as shown.

    python bench/dashboard.py [--loads 7] [--screenshot docs/img/dashboard.png]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import e2e  # bench/e2e.py: the run context, the real worker and the producer
from results_file import command_line, write_results

from stream_app.cache.keys import CacheKeys
from stream_app.cache.telemetry import read_ranker_stats
from stream_app.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: The page has rendered its first poll: the status says so and the counters are filled.
RENDERED = (
    "document.querySelector('#status')?.textContent === 'live'"
    " && document.querySelector('#events-total')?.dataset.value !== ''"
)


def start_api(run: e2e.Run, app_id: str, topic: str, port: int) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(
        {
            "STREAMREC_KAFKA_BOOTSTRAP": run.settings.kafka_bootstrap,
            "STREAMREC_REDIS_URL": run.redis_url,
            "STREAMREC_TOPIC_EVENTS": topic,
            "STREAMREC_APP_ID": app_id,
        }
    )
    log = (run.tmp / "api.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "stream_app.cli", "api", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_until(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def timed_loads(url: str, loads: int, screenshot: Path | None) -> dict[str, Any]:
    """Milliseconds from ``goto`` to the first rendered poll, per load; and the baseline."""
    from playwright.sync_api import sync_playwright

    page_ms: list[float] = []
    dom_ms: list[float] = []
    health_ms: list[float] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for n in range(loads + 1):  # the first of each is a warm-up, not kept
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                t0 = time.perf_counter()
                page.goto(url + "/health")
                health = (time.perf_counter() - t0) * 1000
                t0 = time.perf_counter()
                page.goto(url + "/dashboard")
                page.wait_for_function(RENDERED, timeout=30_000)
                rendered = (time.perf_counter() - t0) * 1000
                load_end = page.evaluate(
                    "performance.getEntriesByType('navigation')[0].loadEventEnd"
                )
                if n > 0:
                    health_ms.append(health)
                    page_ms.append(rendered)
                    dom_ms.append(float(load_end))
                if n == loads and screenshot is not None:
                    page.wait_for_timeout(3_000)  # a few polls: the plots have points
                    screenshot.parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(screenshot))
                context.close()
        finally:
            browser.close()
    return {
        "first_render_ms": page_ms,
        "first_render_ms_median": statistics.median(page_ms),
        "first_render_ms_max": max(page_ms),
        "load_event_ms_median": statistics.median(dom_ms),
        "baseline_health_ms": health_ms,
        "baseline_health_ms_median": statistics.median(health_ms),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", type=int, default=7)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--screenshot", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/dashboard.json")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    run_id = f"dash{uuid.uuid4().hex[:8]}"
    events, _ = e2e.load_events("movielens100k", args.events, seed=7)
    run = e2e.Run(settings, run_id, 0, Path(tempfile.mkdtemp()), events, "movielens100k")
    run.redis_db = e2e.reserve_db(settings, 12, run_id, run.lock_ttl_s)
    topic = run.topic("events")
    e2e.create_topic(settings, topic)
    e2e.produce(settings, topic, events)
    app_id = f"bench-{run_id}"
    worker = e2e.start_worker(run, topic, app_id, 0)
    port = e2e.free_port()
    api = start_api(run, app_id, topic, port)
    url = f"http://127.0.0.1:{port}"
    keys = CacheKeys(settings.redis_key_prefix)
    try:
        client = run.redis()
        wait_until(
            lambda: int(client.get(keys.stat("events")) or 0) >= len(events),
            600,
            f"{len(events)} events counted",
        )
        wait_until(lambda: urllib.request.urlopen(url + "/health", timeout=2), 60, "the API")
        timings = timed_loads(url, args.loads, args.screenshot)
        processed = int(client.get(keys.stat("events")) or 0)
        learned = sum(r.updates for r in read_ranker_stats(client, keys, settings.event_partitions))
    finally:
        api.terminate()
        api.wait(15)
        e2e.stop_workers([worker])
        e2e.release_db(run)
        e2e.delete_topics(settings, run.topics)
    results = {
        "command": command_line("bench/dashboard.py", argv),
        "events_processed": processed,
        "ranker_updates": learned,
        "loads": args.loads,
        **timings,
        "bar_first_render_ms": 1000,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    write_results(args.out, results, echo=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
