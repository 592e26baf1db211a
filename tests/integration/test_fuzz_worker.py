"""Fuzzed messages through the real worker (issue 20, scenario 4, small enough for ``make test``):
2,000 good events and 600 fuzzed messages (``streamrec produce --fuzz``: random bytes, cut
UTF-8, deep nesting, values of most of a megabyte, NaN, wrong types, duplicate keys, NUL bytes)
mixed on the real broker. The worker does not crash, counts every valid message (the fuzz holds
some) exactly once, dead-letters every invalid one exactly once with a reason, and its memory
stays bounded. The oracle is the worker's own validator, run here on the same messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from models.events import InvalidEvent
from stream_app.cache import CacheKeys
from stream_app.cli.produce import fuzzed_messages
from stream_app.kafka.admin import ensure_topics
from stream_app.worker.live_path import parse_message

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SEED, GOOD, FUZZ = 5, 2000, 600
#: RSS growth allowed over the run (a few values of most of a megabyte pass through)
RSS_GROWTH_LIMIT_MB = 150


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _expected() -> tuple[int, int]:
    """(valid, invalid) among the fuzzed messages, by the worker's own validator."""
    valid = 0
    for _, value in fuzzed_messages(FUZZ, SEED):
        try:
            parse_message(value)
            valid += 1
        except InvalidEvent:
            pass
    return valid, FUZZ - valid


def test_fuzzed_messages_never_stop_the_worker_nor_cost_a_good_event(
    settings, start_worker, wait_for, env_for, dead_letters, produce
):
    ensure_topics(settings)
    valid, invalid = _expected()
    assert valid and invalid  # the fuzz holds both, or it checks less than it claims
    client = redis.Redis.from_url(settings.redis_url)
    keys = CacheKeys(settings.redis_key_prefix)
    worker = start_worker(settings)
    wait_for(lambda: "Ready" in worker.log_path.read_text(errors="replace"), 90, "start", str)
    rss_before = _rss_mb(worker.proc.pid)
    args = ["--generate", str(GOOD), "--fuzz", str(FUZZ), "--seed", str(SEED)]
    produce(env_for(settings), *args)

    def counts() -> tuple[int, int]:
        events, dlq = client.mget([keys.stat("events"), keys.stat("dlq")])
        return int(events or 0), int(dlq or 0)

    wait_for(
        lambda: counts() == (GOOD + valid, invalid),
        150,
        f"{GOOD + valid} events and {invalid} dead letters",
        lambda: f"counts={counts()}\n{worker.log_tail()}",
    )
    worker.assert_alive()
    rss_after = _rss_mb(worker.proc.pid)
    assert rss_after - rss_before < RSS_GROWTH_LIMIT_MB, (rss_before, rss_after)
    letters = dict(dead_letters(settings))
    assert len(letters) == invalid and all(d["reason"] for d in letters.values())
    assert counts() == (GOOD + valid, invalid)  # nothing more arrived late
    assert worker.stop() == 0, worker.log_tail()
