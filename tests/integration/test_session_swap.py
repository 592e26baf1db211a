"""The session model in a live worker: a new version announced on model-updates is swapped in
without a restart and without losing events, and blended into the recommendations; a corrupted
newer version is refused while the serving one keeps serving."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import replace

import pytest
import redis

from models.datasets.synthetic import SyntheticConfig, generate_synthetic
from models.events import encode_event
from models.session.artifacts import MODEL_FILE, save_artifact
from models.session.data import Vocabulary
from models.session.network import build_encoder
from models.session.serving import SessionModel
from stream_app.admin import ensure_topics
from stream_app.cache import CacheKeys, UserRecs
from stream_app.model_updates import ModelUpdate, publish_update
from stream_app.topology import SESSION_REASON

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(420),
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
]

METRICS = {
    "test": {"recall@20": 0.30, "mrr@20": 0.10},
    "baselines": {"pop": {"recall@20": 0.10, "mrr@20": 0.03}},
}


def _produce(settings, events) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap.split(","), acks="all")
    for event in events:
        producer.send(settings.topic_events, key=event.user_id.encode(), value=encode_event(event))
    producer.flush(timeout=30)
    producer.close()


def _events_counted(client: redis.Redis, keys: CacheKeys) -> int:
    return int(client.get(keys.stat("events")) or 0)


def _session_recs(client: redis.Redis, keys: CacheKeys, users: set[str]) -> list[UserRecs]:
    raws = client.mget([keys.recs(u) for u in sorted(users)])
    return [UserRecs.from_json(r) for r in raws if r is not None]


def test_new_model_swaps_in_live_and_a_corrupted_one_is_refused(
    settings, start_worker, wait_for, tmp_path
):
    store = tmp_path / "store"
    # Poll rarely: the swap below must come from the model-updates announcement.
    settings = replace(settings, model_dir=store, model_poll_s=3600.0)
    ensure_topics(settings)
    events = generate_synthetic(
        SyntheticConfig(n_users=80, n_items=60, n_clusters=4, n_events=3000, seed=5)
    ).events
    first, second, third = events[:1500], events[1500:2500], events[2500:]
    worker = start_worker(settings)
    client = redis.Redis.from_url(settings.redis_url)
    keys = CacheKeys(settings.redis_key_prefix)

    _produce(settings, first)
    counted = lambda: f"events={_events_counted(client, keys)}\n{worker.log_tail()}"  # noqa: E731
    wait_for(lambda: _events_counted(client, keys) >= len(first), 120, "first events", counted)
    before = _session_recs(client, keys, {e.user_id for e in first})
    assert before and all("session" not in r.model_versions for r in before)

    # A new version lands in the store and is announced on model-updates (what the trainer
    # does). A tiny untrained encoder with passing metrics: the real trainer's tiny models do
    # not beat the item-kNN baseline that ModelSlot's gate demands on this data (refused, as
    # the worker log says), so an accepted swap needs a version built to pass the gate.
    items = sorted({e.item_id for e in events})
    vocab = Vocabulary(items)
    model = SessionModel(build_encoder(vocab.size, embedding_dim=4, hidden_units=4), vocab)
    good = save_artifact(
        model, store, {"dataset": "tiny", "metrics": METRICS}, items[:2],
        now=dt.datetime(2026, 11, 23, 5, 0, tzinfo=dt.UTC),
    )  # fmt: skip
    version = good.name
    publish_update(
        settings.kafka_bootstrap, settings.topic_model_updates, ModelUpdate(version, str(good))
    )
    wait_for(
        lambda: f"session model update {version}: swapped in" in worker.log_path.read_text(),
        120,
        "the worker to swap the announced version in",
        worker.log_tail,
    )

    _produce(settings, second)
    total = len(first) + len(second)
    wait_for(lambda: _events_counted(client, keys) >= total, 120, "events after the swap", counted)
    worker.assert_alive()  # no restart
    assert _events_counted(client, keys) == total  # nothing lost, nothing counted twice
    users = {e.user_id for e in second}
    after = _session_recs(client, keys, users)
    assert len(after) == len(users)
    assert all(r.model_versions.get("session") == version for r in after)
    assert sum(any(i.reason == SESSION_REASON for i in r.items) for r in after) >= len(users) // 2

    # A newer version whose model file was damaged after its manifest was written.
    bad = store / "29991231T000000Z-deadbeef"
    shutil.copytree(good, bad)
    raw = bytearray((bad / MODEL_FILE).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (bad / MODEL_FILE).write_bytes(bytes(raw))
    publish_update(
        settings.kafka_bootstrap, settings.topic_model_updates, ModelUpdate(bad.name, str(bad))
    )
    wait_for(
        lambda: f"session model {bad.name} refused" in worker.log_path.read_text(),
        120,
        "the worker to refuse the corrupted version",
        worker.log_tail,
    )
    _produce(settings, third)
    wait_for(lambda: _events_counted(client, keys) >= len(events), 120, "last events", counted)
    worker.assert_alive()
    assert _events_counted(client, keys) == len(events)
    last = _session_recs(client, keys, {e.user_id for e in third})
    assert last and all(r.model_versions.get("session") == version for r in last)
    assert worker.stop() == 0, worker.log_tail()
