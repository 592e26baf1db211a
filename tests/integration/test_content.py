"""Content and cold-start items on the real stack: an item published to the catalog with
categories and no event at all reaches, through a real worker's catalog follower and scoring,
the list of a user whose history matches its categories, with a reason that names the
category; a user of the other category does not get it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from stream_app.cache import CacheKeys, UserRecs
from stream_app.kafka.admin import ensure_topics
from stream_app.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

T0 = 1_700_000_000_000


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _catalog() -> list[dict[str, Any]]:
    records = [
        {"item_id": f"d{k}", "title": f"Drama {k}", "categories": ["Drama"]} for k in range(8)
    ]
    records += [
        {"item_id": f"c{k}", "title": f"Comedy {k}", "categories": ["Comedy"]} for k in range(8)
    ]
    records.append({"item_id": "fresh-drama", "title": "A Fresh Drama", "categories": ["Drama"]})
    return records


def _crowd() -> list[dict[str, Any]]:
    """Twenty users, each of one genre, so the lists and trending know every old item."""
    rows = []
    for n in range(400):
        user, genre = f"u{n % 20}", "d" if n % 20 < 10 else "c"
        rows.append(
            {
                "user_id": user,
                "item_id": f"{genre}{n % 8}",
                "event_type": "view",
                "timestamp": T0 + n,
            }
        )
    return rows


def _served(client: redis.Redis, keys: CacheKeys, user: str) -> dict[str, str]:
    raw = client.get(keys.recs(user))
    return {} if raw is None else {r.item_id: r.reason for r in UserRecs.from_json(raw).items}


def test_a_metadata_only_item_reaches_a_user_whose_history_matches(
    settings: Settings, start_worker, wait_for, env_for, produce
) -> None:
    ensure_topics(settings)
    worker = start_worker(settings)
    env = env_for(settings)
    state = settings.state_path
    out = produce(env, "--items", "--dataset", _jsonl(state / "items.jsonl", _catalog()))
    assert "produced 17 item records" in out
    wait_for(
        lambda: "catalog follower: 17 records applied" in worker.log_tail(),
        60,
        "the worker's catalog follower has the catalog",
        worker.log_tail,
    )
    produce(env, "--dataset", _jsonl(state / "crowd.jsonl", _crowd()))
    client = redis.Redis.from_url(settings.redis_url)
    keys = CacheKeys(settings.redis_key_prefix)
    wait_for(
        lambda: (
            int(client.get(keys.stat("events")) or 0) >= 400 and client.exists(keys.neighbors("d1"))
        ),
        120,
        "the crowd's events processed and the item side's lists published",
        worker.log_tail,
    )
    fans = [
        {"user_id": user, "item_id": item, "event_type": "view", "timestamp": T0 + 1_000 + n}
        for n, (user, item) in enumerate(
            [("drama-fan", "d0"), ("drama-fan", "d1"), ("comedy-fan", "c0"), ("comedy-fan", "c1")]
        )
    ]
    fans[1] |= {"event_type": "rating", "value": 5}  # her newest act names its verb
    produce(env, "--dataset", _jsonl(state / "fans.jsonl", fans))
    wait_for(
        lambda: _served(client, keys, "drama-fan") and _served(client, keys, "comedy-fan"),
        120,
        "both fans' lists in Redis",
        worker.log_tail,
    )
    drama, comedy = _served(client, keys, "drama-fan"), _served(client, keys, "comedy-fan")
    assert drama.get("fresh-drama") == "because you like Drama", drama
    assert "fresh-drama" not in comedy, comedy
    assert "because you rated d1 5 stars" in drama.values(), drama
