"""Crash recovery against the real stack.

A worker killed with SIGKILL mid-stream and restarted loses no events and counts none twice (the
counters and trending move atomically with per-partition high-water marks in Redis), nor any
dead letter (each bad message's position is in the DLQ, counted once); its tables come back
from their changelogs (histories still exclude what users saw, item rows keep their counts),
and each partition's River ranker continues from its checkpoint, which moves with the counted
marks: every event is learned exactly once across the crash.

Not here yet: a two-worker rebalance test. A version of it (second worker joining mid-stream)
passed twice and once ended at 3,999 of 4,000 events counted; that loss is not explained yet."""

from __future__ import annotations

import math
import signal
from collections import defaultdict

import pytest
import redis

from models.datasets import SyntheticConfig, generate_synthetic
from models.events import event_weight
from models.online.stream import StreamRanker
from stream_app.cache import CacheKeys, MemoryCache, UserRecs
from stream_app.cache.keys import counted_marks
from stream_app.cache.redis_backend import RedisCache
from stream_app.kafka.admin import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

SEED = 11
N_EVENTS = 4000
N_MALFORMED = 40


def _events(client: redis.Redis, keys: CacheKeys) -> int:
    return int(client.get(keys.stat("events")) or 0)


def _rankers(client: redis.Redis, keys: CacheKeys, partitions: int) -> dict[int, StreamRanker]:
    """Each partition's checkpointed ranker."""
    raw = client.mget([keys.ranker(p) for p in range(partitions)])
    return {p: StreamRanker.from_json(v) for p, v in enumerate(raw) if v is not None}


def _offline():
    """What an offline replay of the same events gives: seen sets, item norms, trending."""
    events = generate_synthetic(SyntheticConfig(seed=SEED).resized(N_EVENTS)).events
    seen: dict[str, set[str]] = defaultdict(set)
    norms: dict[str, float] = defaultdict(float)
    for e in events:
        seen[e.user_id].add(e.item_id)
        norms[e.item_id] += event_weight(e) ** 2
    return events, seen, norms


def _check_state(client, keys, settings, worker_logs) -> None:
    events, seen, norms = _offline()
    # Exactly once in Redis: no event lost, none counted twice.
    assert _events(client, keys) == len(events), worker_logs()
    # Trending equals an offline replay of the same events (decayed to the same "now").
    replay = MemoryCache()
    replay.update_trending(
        [(e.item_id, event_weight(e), e.timestamp_ms) for e in events], 3600.0, 0, 1
    )
    now = max(e.timestamp_ms for e in events)
    # (the top 50: the data spans a year, so older items' decayed scores underflow to 0)
    assert client.zcard(keys.trending) == len(norms)
    ours = dict(RedisCache(settings.redis_url, keys).top_trending(len(norms), 3600.0, now))
    expected = replay.top_trending(50, 3600.0, now)  # near-ties may swap places: compare scores
    assert all(
        item in ours and math.isclose(ours[item], score, rel_tol=1e-6, abs_tol=1e-9)
        for item, score in expected
    ), (expected[:5], sorted(ours.items(), key=lambda p: -p[1])[:5])
    # Histories recovered: every user's list still excludes everything they saw.
    for user, items in seen.items():
        raw = client.get(keys.recs(user))
        assert raw is not None, user
        assert not {r.item_id for r in UserRecs.from_json(raw).items} & items, user
    # Item rows recovered, each delta applied once: no item's count went back (a lost row
    # would restart from zero) and none went up (a replay cut into other batches than the
    # crashed one would apply its deltas twice without the sent marks).
    names = sorted(norms)
    published = dict(zip(names, client.hmget(keys.item_norms, names), strict=True))
    lost = [i for i in names if published[i] is None or float(published[i]) < norms[i] - 1e-6]
    assert not lost, f"{len(lost)} items lost counts, e.g. {lost[:5]}"
    twice = [i for i in names if float(published[i]) > norms[i] + 1e-6]
    assert not twice, f"{len(twice)} items counted twice, e.g. {twice[:5]}"


def _check_dead_letters(client, keys, settings, dead_letters) -> None:
    """Every bad message left one dead letter, counted once, across the crash: the DLQ topic
    holds each source position (its key), and the counter says exactly ``N_MALFORMED``."""
    dlq_keys = [key for key, _ in dead_letters(settings)]
    assert len(set(dlq_keys)) == N_MALFORMED, (len(set(dlq_keys)), len(dlq_keys))
    assert int(client.get(keys.stat("dlq")) or 0) == N_MALFORMED, len(dlq_keys)


def test_sigkill_mid_stream_then_restart_loses_nothing(
    settings, start_worker, wait_for, env_for, dead_letters, producing
):
    ensure_topics(settings)
    client = redis.Redis.from_url(settings.redis_url)
    keys = CacheKeys(settings.redis_key_prefix)
    first = start_worker(settings)
    # The stream starts once the worker consumes: started earlier on a loaded machine, the
    # whole stream can wait as a backlog that the worker takes in a few batches, and the kill
    # then comes after the last event instead of mid-stream.
    wait_for(
        lambda: "[^Worker]: Ready" in first.log_path.read_text(errors="replace"),
        120,
        "the first worker to be ready",
        first.log_tail,
    )
    producer = producing(
        env_for(settings),
        *("--seed", str(SEED), "--generate", str(N_EVENTS), "--rate", "1000"),
        *("--invalid", str(N_MALFORMED)),
    )
    wait_for(
        lambda: _events(client, keys) >= 1000,
        120,
        "the first worker to process 1,000 events",
        first.log_tail,
    )
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    assert first.proc.returncode == -signal.SIGKILL
    at_kill = _rankers(client, keys, settings.event_partitions)
    assert at_kill and all(r.n_events > 0 for r in at_kill.values()), at_kill
    second = start_worker(settings)
    out, _ = producer.communicate(timeout=120)
    assert producer.returncode == 0, out
    wait_for(
        lambda: _events(client, keys) >= N_EVENTS,
        180,
        "the restarted worker to catch up",
        lambda: (
            f"events={_events(client, keys)} counted marks="
            f"{client.hgetall(keys.hwm(counted_marks(settings.topic_events)))}\n{second.stacks()}"
        ),
    )
    names = sorted(_offline()[2])
    wait_for(
        lambda: None not in client.hmget(keys.item_norms, names),
        60,
        "the item side to publish every item",
        second.log_tail,
    )
    second.assert_alive()
    _check_state(client, keys, settings, second.log_tail)
    _check_dead_letters(client, keys, settings, dead_letters)
    # The rankers went on from their checkpoints (no update count fell back) and learned every
    # event exactly once: the events counted and the events learned are one set.
    after = _rankers(client, keys, settings.event_partitions)
    assert all(after[p].n_events > r.n_events for p, r in at_kill.items()), [
        (p, r.n_events, after[p].n_events) for p, r in at_kill.items()
    ]
    assert all(after[p].n_updates >= r.n_updates for p, r in at_kill.items())
    assert sum(r.n_events for r in after.values()) == N_EVENTS, after
    assert second.stop() == 0, second.log_tail()
