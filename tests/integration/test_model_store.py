"""The model store over time on the real stack: a refused version stays refused across a worker
restart, which falls back to the last accepted version; ``streamrec models`` list, rollback, pin
and unpin steer a running worker through the store's ledger."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis

from models.events import Interaction, encode_event
from models.session.artifacts import MODEL_FILE
from models.session.store import read_ledger
from stream_app.cache import CacheKeys, UserRecs
from stream_app.cache.journals import decode_entries
from stream_app.kafka.admin import ensure_topics
from stream_app.kafka.model_updates import ModelUpdate, publish_update
from stream_app.settings import Settings

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(420),
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
]


def _journal(client: redis.Redis, keys: CacheKeys) -> list[dict[str, Any]]:
    """The slot's decisions, oldest first."""
    return list(reversed(decode_entries(client.lrange(keys.model_decisions, 0, -1))))


def _damaged_copy(good: Path, name: str) -> Path:
    """A newer version whose model file was damaged after its manifest was written, built in a
    hidden directory and renamed into place as the trainer does (a poll never sees it half)."""
    building = good.parent / f".incoming-{name}"
    shutil.copytree(good, building)
    raw = bytearray((building / MODEL_FILE).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (building / MODEL_FILE).write_bytes(bytes(raw))
    return building.rename(good.parent / name)


def _models(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream_app.cli", "models", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _listed(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    done = _models(env, "list", "--json")
    assert done.returncode == 0, done.stderr
    return {row["version"]: row for row in json.loads(done.stdout)["versions"]}


def test_a_refusal_survives_a_restart_which_falls_back_to_the_last_accepted_version(
    settings: Settings,
    start_worker: Callable[..., Any],
    wait_for: Callable[..., None],
    tiny_version: Callable[..., Path],
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    settings = replace(settings, model_dir=store, model_poll_s=1.0)
    ensure_topics(settings)
    good = tiny_version(store, 5)
    client = redis.Redis.from_url(settings.redis_url)
    keys = CacheKeys(settings.redis_key_prefix)
    decisions = lambda: _journal(client, keys)  # noqa: E731
    worker = start_worker(settings)
    wait_for(lambda: len(decisions()) >= 1, 120, "the start-up load", worker.log_tail)
    assert (decisions()[0]["version"], decisions()[0]["accepted"]) == (good.name, True)

    bad = _damaged_copy(good, "20261123T060000Z-deadbeef")
    wait_for(lambda: len(decisions()) >= 2, 120, "the poll to refuse it", worker.log_tail)
    assert (decisions()[1]["version"], decisions()[1]["accepted"]) == (bad.name, False)
    assert decisions()[1]["reason"].startswith("load failed: hash mismatch")
    assert worker.stop() == 0, worker.log_tail()
    ledger = read_ledger(store)
    assert set(ledger.refused) == {bad.name} and ledger.serving == good.name

    again = start_worker(settings)
    wait_for(lambda: len(decisions()) >= 3, 120, "the restarted worker's load", again.log_tail)
    restart = decisions()[2]
    assert (restart["version"], restart["accepted"], restart["trigger"]) == (
        good.name,
        True,
        "start",
    )
    assert "fallback" in restart["reason"]
    # Fresh events are blended by the fallback; the refused version was never loaded again.
    t0 = 1_790_000_000_000
    events = [
        Interaction(f"u{u}", f"i{(u + j) % 12}", "view", t0 + 1000 * (10 * u + j))
        for u in range(5)
        for j in range(4)
    ]
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap.split(","), acks="all")
    for e in events:
        producer.send(settings.topic_events, key=e.user_id.encode(), value=encode_event(e))
    producer.flush(timeout=30)
    producer.close()
    counted = lambda: int(client.get(keys.stat("events")) or 0)  # noqa: E731
    wait_for(lambda: counted() >= len(events), 120, "the events", again.log_tail)
    raws = client.mget([keys.recs(f"u{u}") for u in range(5)])
    recs = [UserRecs.from_json(r) for r in raws if r is not None]
    assert len(recs) == 5 and all(r.model_versions.get("session") == good.name for r in recs)
    assert [d["version"] for d in decisions()].count(bad.name) == 1
    assert bad.name not in again.log_path.read_text()
    assert again.stop() == 0, again.log_tail()


def test_models_list_rollback_pin_and_unpin_steer_a_running_worker(
    settings: Settings,
    start_worker: Callable[..., Any],
    wait_for: Callable[..., None],
    tiny_version: Callable[..., Path],
    env_for: Callable[[Settings], dict[str, str]],
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    settings = replace(settings, model_dir=store, model_poll_s=1.0)
    ensure_topics(settings)
    env = env_for(settings)
    v5 = tiny_version(store, 5).name
    client = redis.Redis.from_url(settings.redis_url)
    keys = CacheKeys(settings.redis_key_prefix)
    decisions = lambda: _journal(client, keys)  # noqa: E731
    last = lambda: (decisions()[-1]["version"], decisions()[-1]["accepted"])  # noqa: E731
    worker = start_worker(settings)
    wait_for(lambda: len(decisions()) >= 1, 120, "the start-up load", worker.log_tail)
    v6 = tiny_version(store, 6).name
    wait_for(lambda: last() == (v6, True), 120, "the poll to swap v6 in", worker.log_tail)
    listed = _listed(env)
    assert [listed[v]["status"] for v in (v5, v6)] == ["accepted", "accepted"]
    assert listed[v6]["serving"] and not listed[v5]["serving"]
    assert listed[v6]["recall@20"] == pytest.approx(0.30)

    done = _models(env, "rollback")
    assert done.returncode == 0, done.stderr
    assert f"rolled back {v6}" in done.stdout and f"fall back to {v5}" in done.stdout
    wait_for(lambda: last() == (v5, True), 120, "the fallback to v5", worker.log_tail)
    assert "fallback" in decisions()[-1]["reason"]
    listed = _listed(env)
    assert listed[v6]["status"] == "refused: rolled back by the operator"
    assert listed[v5]["serving"]
    refused = _models(env, "rollback")  # nothing accepted is left before v5
    assert refused.returncode == 1 and "no earlier accepted version" in refused.stderr

    assert _models(env, "pin", v6).returncode == 0
    wait_for(lambda: last() == (v6, True), 120, "the pinned v6", worker.log_tail)
    assert "pinned" in decisions()[-1]["reason"]
    v7 = tiny_version(store, 7)
    # A newer version announced while v6 is pinned is not swapped in.
    publish_update(settings.kafka, settings.topic_model_updates, ModelUpdate(v7.name, str(v7)))
    wait_for(lambda: last()[0] == v7.name, 120, "the announcement's decision", worker.log_tail)
    assert decisions()[-1]["reason"] == f"not swapped in: {v6} is pinned"
    assert not decisions()[-1]["accepted"] and _listed(env)[v6]["status"] == "pinned"

    assert _models(env, "unpin").returncode == 0
    wait_for(lambda: last() == (v7.name, True), 120, "v7 after the unpin", worker.log_tail)
    assert _models(env, "pin", "20990101T000000Z-nothere").returncode == 1
    worker.assert_alive()
    assert worker.stop() == 0, worker.log_tail()
