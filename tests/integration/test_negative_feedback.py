"""Negative feedback on the real stack: a real worker, Kafka and Redis. A user dislikes an item
her list serves, another rates hers below the threshold: neither item is served to them again,
through later events of their own and a worker restart (the exclusions come back from the
history table's changelog), and neither adds to trending."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis

from models.datasets import SyntheticConfig, generate_synthetic
from stream_app.cache import CacheKeys, UserRecs
from stream_app.kafka.admin import ensure_topics
from stream_app.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SEED = 7
FIRST = 1_000


def _produce_events(
    produce: Callable[..., str], env: dict[str, str], path: Path, events: list[dict[str, Any]]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    produce(env, "--seed", str(SEED), "--dataset", str(path))


def _events(client: redis.Redis, keys: CacheKeys) -> int:
    return int(client.get(keys.stat("events")) or 0)


def _served(client: redis.Redis, keys: CacheKeys, user: str) -> list[str]:
    raw = client.get(keys.recs(user))
    assert raw is not None, f"no list for {user}"
    return [r.item_id for r in UserRecs.from_json(raw).items]


def _event(user: str, item: str, kind: str, ts: int, value: float | None = None) -> dict:
    out = {"user_id": user, "item_id": item, "event_type": kind, "timestamp": ts}
    return out if value is None else {**out, "value": value}


def test_a_turned_down_item_is_never_served_back(
    settings: Settings, start_worker, wait_for, env_for, produce
) -> None:
    ensure_topics(settings)
    settings = replace(settings, top_n=10, negative_rating_below=3.0)
    env = env_for(settings)
    assert env["STREAMREC_NEGATIVE_RATING_BELOW"] == "3.0"
    worker = start_worker(settings)
    client = redis.Redis.from_url(settings.redis_url)
    keys = CacheKeys(settings.redis_key_prefix)
    produce(env, "--seed", str(SEED), "--generate", str(FIRST))
    wait_for(lambda: _events(client, keys) >= FIRST, 120, "the first events", worker.log_tail)

    stream = generate_synthetic(SyntheticConfig(seed=SEED).resized(FIRST)).events
    t = max(e.timestamp_ms for e in stream) + 60_000
    users = sorted({e.user_id for e in stream})
    dislikes, rates = users[0], users[1]

    def near(item: str) -> list[str]:
        return [other for other, _ in json.loads(client.get(keys.neighbors(item)) or "[]")]

    def pullable(user: str) -> str | None:
        """Her first served item with two neighbours published (to pull towards it later)."""
        return next((i for i in _served(client, keys, user) if len(near(i)) >= 2), None)

    # the item side lags the user side by up to ITEM_BATCH_DELAY_S
    wait_for(lambda: pullable(dislikes) and pullable(rates), 30, "neighbour lists", worker.log_tail)
    disliked, rated = pullable(dislikes), pullable(rates)
    assert disliked is not None and rated is not None
    before = {item: client.zscore(keys.trending, item) for item in (disliked, rated)}
    _produce_events(
        produce,
        env,
        settings.state_path / "negative.jsonl",
        [
            _event(dislikes, disliked, "dislike", t),
            _event(rates, rated, "rating", t, 2.0),
        ],
    )
    wait_for(lambda: _events(client, keys) >= FIRST + 2, 60, "the negative events", worker.log_tail)
    assert disliked not in _served(client, keys, dislikes)
    assert rated not in _served(client, keys, rates)
    assert {item: client.zscore(keys.trending, item) for item in before} == before

    # Her later events (the turned-down item's own neighbours, the strongest pull towards it)
    # bring it back neither before nor after a restart, which only the recovered row knows.
    rounds = [
        [
            _event(user, near(item)[k], "view", t + 1_000 * (k + 1))
            for user, item in ((dislikes, disliked), (rates, rated))
        ]
        for k in range(2)
    ]
    _produce_events(produce, env, settings.state_path / "later.jsonl", rounds[0])
    total = FIRST + 2 + len(rounds[0])
    wait_for(lambda: _events(client, keys) >= total, 60, "her later events", worker.log_tail)
    assert disliked not in _served(client, keys, dislikes)
    assert rated not in _served(client, keys, rates)
    assert worker.stop() == 0, worker.log_tail()

    restarted = start_worker(settings)
    for user in (dislikes, rates):
        client.delete(keys.recs(user))
    _produce_events(produce, env, settings.state_path / "after.jsonl", rounds[1])
    total += len(rounds[1])
    wait_for(
        lambda: _events(client, keys) >= total, 120, "events after a restart", restarted.log_tail
    )
    assert disliked not in _served(client, keys, dislikes)
    assert rated not in _served(client, keys, rates)
    assert {item: client.zscore(keys.trending, item) for item in before} == before
    assert restarted.stop() == 0, restarted.log_tail()
