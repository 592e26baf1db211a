"""The refresh after a session-model swap, in a live worker: once a version is swapped in, the
cached list of a user who was active a moment ago and then went quiet is recomputed with it in
the background, with her history and without any event of hers; an active user's list still
comes from the live path."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis

from models.datasets.files import write_event_file
from models.events import Interaction
from models.online.stream import SESSION_REASON
from stream_app.cache import CacheKeys, UserRecs
from stream_app.kafka.admin import ensure_topics
from stream_app.kafka.model_updates import ModelUpdate, publish_update
from stream_app.settings import Settings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(300),
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
]

T0 = 1_790_000_000_000
#: The tiny session model's items (``tiny_version``): ann viewed the first four, bob the next.
ANN = ["i0", "i1", "i2", "i3"]
BOB = ["i4", "i5", "i6"]
VOCABULARY = {f"i{j}" for j in range(12)}


def _recs(client: redis.Redis, keys: CacheKeys, user: str) -> UserRecs | None:
    raw = client.get(keys.recs(user))
    return UserRecs.from_json(raw) if raw is not None else None


def _events(user: str, items: list[str], start_ms: int) -> list[Interaction]:
    return [Interaction(user, item, "view", start_ms + 1000 * j) for j, item in enumerate(items)]


def test_an_inactive_users_list_is_refreshed_with_the_swapped_in_model(
    settings: Settings,
    start_worker: Callable[..., Any],
    wait_for: Callable[..., None],
    env_for: Callable[[Settings], dict[str, str]],
    produce: Callable[..., str],
    tiny_version: Callable[..., Path],
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    # No model at start; the swap below comes from the model-updates announcement.
    settings = replace(settings, model_dir=store, model_poll_s=3600.0)
    ensure_topics(settings)
    worker = start_worker(settings)
    client = redis.Redis.from_url(settings.redis_url)
    keys = CacheKeys(settings.redis_key_prefix)
    counted = lambda: int(client.get(keys.stat("events")) or 0)  # noqa: E731
    diagnose = lambda: f"events={counted()}\n{worker.log_tail()}"  # noqa: E731

    first = [*_events("ann", ANN, T0), *_events("bob", BOB, T0 + 500)]
    write_event_file(first, tmp_path / "first.jsonl")
    produce(env_for(settings), "--dataset", str(tmp_path / "first.jsonl"))
    wait_for(lambda: counted() >= len(first), 120, "the first events", diagnose)
    before = _recs(client, keys, "ann")
    assert before is not None and before.recent == tuple(ANN)
    assert "session" not in before.model_versions

    # ann goes quiet; a session model is swapped in.
    version = tiny_version(store, 5)
    update = ModelUpdate(version.name, str(version))
    publish_update(settings.kafka, settings.topic_model_updates, update)
    refreshed = lambda: getattr(_recs(client, keys, "ann"), "model_versions", {})  # noqa: E731
    wait_for(
        lambda: refreshed().get("session") == version.name,
        120,
        "ann's cached list to name the swapped-in session model",
        worker.log_tail,
    )

    after = _recs(client, keys, "ann")
    assert after is not None
    assert counted() == len(first)  # no event of hers (nor anyone's) since
    assert after.recent == before.recent  # the same history, from the worker's table
    assert after.computed_at > before.computed_at
    assert after.model_versions["cf"] == before.model_versions["cf"]
    ids = [r.item_id for r in after.items]
    assert len(ids) == len(set(ids)) and not set(ids) & set(ANN)
    session_items = [r.item_id for r in after.items if r.reason == SESSION_REASON]
    assert session_items and set(session_items) <= VOCABULARY - set(ANN)
    assert int(client.get(keys.stat("refreshed")) or 0) >= 1
    assert 0 < client.ttl(keys.recs("ann")) <= settings.rec_ttl_s
    wait_for(
        lambda: f"session model {version.name}: refreshed" in worker.log_path.read_text(),
        60,
        "the refresh's log line",
        worker.log_tail,
    )

    # bob stays active: his next event's list comes from the live path, with the new model.
    write_event_file(_events("bob", ["i7"], T0 + 60_000), tmp_path / "second.jsonl")
    produce(env_for(settings), "--dataset", str(tmp_path / "second.jsonl"))
    wait_for(lambda: counted() >= len(first) + 1, 120, "bob's new event", diagnose)
    bob = _recs(client, keys, "bob")
    assert bob is not None and bob.recent == (*BOB, "i7")
    assert bob.model_versions["session"] == version.name
    assert not {r.item_id for r in bob.items} & {*BOB, "i7"}
    worker.assert_alive()
    assert worker.stop() == 0, worker.log_tail()
