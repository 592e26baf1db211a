"""Train the session model from the real events topic and announce it on model-updates."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from models.datasets.synthetic import SyntheticConfig, generate_synthetic
from models.events import encode_event
from models.session.artifacts import load_session_model
from stream_app.kafka.admin import ensure_topics
from stream_app.kafka.model_updates import parse_update
from stream_app.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def _events() -> list[Any]:
    """The stream both tests put on the topic: 3,000 synthetic events."""
    config = SyntheticConfig(n_users=80, n_items=60, n_clusters=4, n_events=3000, seed=5)
    return list(generate_synthetic(config).events)


def _train(env: dict[str, str], out: Path, store: Path, *flags: str) -> subprocess.CompletedProcess:
    """``streamrec train-session`` on the topic, a small network for one epoch; its run."""
    return subprocess.run(
        [
            sys.executable, "-m", "stream_app.cli", "train-session",
            "--dataset", "kafka", "--protocol", "session",
            "--epochs", "1", "--embedding-dim", "8", "--hidden-units", "8",
            "--out", str(out), "--store", str(store), "--no-progress", *flags,
        ],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _produce(settings: Settings, values: list[bytes]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap.split(","), acks="all")
    for value in values:
        producer.send(settings.topic_events, value=value)
    producer.flush(timeout=30)
    producer.close()


def _read_updates(settings: Settings) -> list[bytes]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        settings.topic_model_updates,
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        group_id=None,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    try:
        return [record.value for record in consumer]
    finally:
        consumer.close()


@pytest.mark.integration
def test_train_from_topic_and_announce(
    settings: Settings, env_for: Callable[[Settings], dict[str, str]], tmp_path: Path
) -> None:
    ensure_topics(settings)
    events = _events()
    _produce(settings, [encode_event(e) for e in events] + [b"not json", b"{}"])

    out = tmp_path / "results.json"
    env, store = env_for(settings), tmp_path / "store"
    done = _train(env, out, store, "--min-updates", "0", "--publish", "always")
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["dataset"] == "kafka"
    assert results["data"]["events"] == len(events)
    assert results["data"]["invalid_events_skipped"] == 2

    updates = [parse_update(raw) for raw in _read_updates(settings)]
    assert [u.version for u in updates] == [results["artifact"]["version"]]
    model = load_session_model(updates[0].path)
    assert updates[0].metrics == pytest.approx(model.manifest["metrics"])
    assert model.recommend([[events[0].item_id]], 5)[0]


@pytest.mark.integration
def test_each_cycle_trains_on_the_newest_events_and_the_store_keeps_the_last_k(
    settings: Settings, env_for: Callable[[Settings], dict[str, str]], tmp_path: Path
) -> None:
    from dataclasses import replace

    from models.session.store import list_versions

    ensure_topics(settings)
    events = _events()
    _produce(settings, [encode_event(e) for e in events])
    windowed = replace(settings, train_window_events=500, train_min_events=100, model_keep=2)
    store = tmp_path / "store"
    versions = []
    for cycle in range(3):
        out = tmp_path / f"results-{cycle}.json"
        done = _train(env_for(windowed), out, store, "--publish", "never")
        assert done.returncode == 0, done.stderr[-3000:]
        results = json.loads(out.read_text())
        # the newest 500 of the topic's 3,000, read from each partition's tail
        assert results["data"]["events"] == 500
        assert results["data"]["first_event_ms"] == sorted(e.timestamp_ms for e in events)[-500]
        read = re.search(r"read (\d+) events from topic", done.stderr)
        assert read is not None and 500 <= int(read.group(1)) < len(events)
        versions.append(results["artifact"]["version"])
    assert list_versions(store) == versions[1:]  # the oldest of three deleted, two kept
