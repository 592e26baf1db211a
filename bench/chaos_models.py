"""Scenario 5 of ``bench/chaos.py``: model store attacks offered to a running worker.

A small honest session-model version serves; each attack (a truncated file, a hash mismatch, a
manifest lying about its metrics, a Lambda and a custom layer, a version symlinked out of the
store, a path traversal in a ``model-updates`` message) is announced on ``model-updates`` and
must be refused with a reason in the worker's journal while the good version keeps serving.
The unit tests (tests/unit/worker/test_model_slot_artifact.py) hold more variants of each.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import redis
from chaos_stack import PrivateStack, Worker, counter, scenario_settings, wait_until

from models.session.tiny import ITEMS
from stream_app.cache import CacheKeys, UserRecs
from stream_app.cache.journals import decode_entries
from stream_app.settings import Settings


def _version(store: Path, hour: int, layer: Any = None) -> Path:
    """An honest version (``models.session.tiny``) with ``layer`` between its embedding and
    its GRU, dated ``hour`` on a fixed day."""
    from models.session.tiny import save_tiny_version

    return save_tiny_version(store, hour, layer)


def _copy(good: Path, name: str) -> Path:
    return Path(shutil.copytree(good, good.parent / f"20261124T000000Z-{name}"))


def _truncated(good: Path, outside: Path) -> str:
    bad = _copy(good, "truncated")
    raw = (bad / "model.keras").read_bytes()
    (bad / "model.keras").write_bytes(raw[: len(raw) // 2])
    return str(bad)


def _hash_mismatch(good: Path, outside: Path) -> str:
    bad = _copy(good, "flipped-byte")
    raw = bytearray((bad / "model.keras").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (bad / "model.keras").write_bytes(bytes(raw))
    return str(bad)


def _lying_manifest(good: Path, outside: Path) -> str:
    """A careful forger: better metrics claimed, every hash made consistent again."""
    from models.session.artifacts import ARTIFACT_FILES, MANIFEST_FILE, content_hash, sha256_file

    bad = _copy(good, "lying")
    manifest = json.loads((bad / MANIFEST_FILE).read_text())
    manifest["metrics"] = {**manifest["metrics"], "test": {"recall@20": 1.0, "mrr@20": 0.99}}
    manifest["version"] = bad.name
    manifest["files"] = {name: sha256_file(bad / name) for name in ARTIFACT_FILES}
    manifest["content_hash"] = content_hash(manifest)
    (bad / MANIFEST_FILE).write_text(json.dumps(manifest))
    return str(bad)


def _lambda_layer(good: Path, outside: Path) -> str:
    import keras

    marker = str(outside / "lambda-ran")
    touch = lambda x, path: (open(path, "w").close(), x)[1]  # noqa: E731
    bad = _version(good.parent, 7, keras.layers.Lambda(touch, arguments={"path": marker}))
    Path(marker).unlink()  # building and saving ran it; the worker must not
    return str(bad)


def _custom_layer(good: Path, outside: Path) -> str:
    import keras

    class Marker(keras.layers.Layer):
        """Touches a file whenever it runs: proof that code from the file ran."""

        def call(self, x: Any) -> Any:
            (outside / "custom-ran").touch()
            return x

    keras.saving.register_keras_serializable(package="attack")(Marker)
    bad = _version(good.parent, 8, Marker())
    (outside / "custom-ran").unlink()
    return str(bad)


def _symlink_out(good: Path, outside: Path) -> str:
    target = Path(shutil.copytree(good, outside / "valid-elsewhere"))
    link = good.parent / "20261124T000000Z-dir-link"
    link.symlink_to(target, target_is_directory=True)
    return str(link)


def _traversal(good: Path, outside: Path) -> str:
    copy = Path(shutil.copytree(good, outside / good.name))  # would load fine if opened
    return f"{good.parent}/../{outside.name}/{copy.name}"


ATTACKS: dict[str, Callable[[Path, Path], str]] = {
    "truncated file": _truncated,
    "hash mismatch": _hash_mismatch,
    "manifest lies about its metrics": _lying_manifest,
    "Lambda layer": _lambda_layer,
    "custom layer": _custom_layer,
    "version symlinked out of the store": _symlink_out,
    "path traversal in model-updates": _traversal,
}


def _journal(settings: Settings) -> list[dict]:
    key = CacheKeys(settings.redis_key_prefix).model_decisions
    return decode_entries(redis.Redis.from_url(settings.redis_url).lrange(key, 0, -1))


def _serves(settings: Settings, version: str, round_: int) -> bool:
    """Fresh events get lists blended by ``version``: the good one still serves."""
    from kafka import KafkaProducer

    from models.events import Interaction, encode_event

    t0 = 1_790_000_000_000 + round_ * 10_000_000
    users = [f"u{round_}-{u}" for u in range(3)]
    events = [Interaction(u, ITEMS[(i + j) % 12], "view", t0 + 1000 * (10 * i + j))
              for i, u in enumerate(users) for j in range(3)]  # fmt: skip
    before = counter(settings, "events")
    producer = KafkaProducer(bootstrap_servers=[settings.kafka_bootstrap], acks="all")
    for e in events:
        producer.send(settings.topic_events, key=e.user_id.encode(), value=encode_event(e))
    producer.flush(30)
    producer.close()
    wait_until(lambda: counter(settings, "events") >= before + len(events), 120, "events")
    client = redis.Redis.from_url(settings.redis_url)
    keys = CacheKeys(settings.redis_key_prefix)
    recs = [UserRecs.from_json(r) for r in client.mget([keys.recs(u) for u in users]) if r]
    return len(recs) == len(users) and all(r.model_versions.get("session") == version for r in recs)


def scenario_model_attacks(stack: PrivateStack, work: Path, args: Any) -> dict:
    """5. Each attack refused with a reason; the serving version keeps serving after each."""
    from stream_app.kafka.admin import ensure_topics
    from stream_app.kafka.model_updates import ModelUpdate, publish_update

    store, outside = work / "store", work / "outside"
    outside.mkdir(parents=True)
    settings = scenario_settings(stack, "model-attacks", 8, work)
    settings = replace(settings, model_dir=store, model_poll_s=3600.0)  # offers by message
    good = _version(store, 5)
    ensure_topics(settings)
    worker = Worker(settings, work / "model-attacks")
    wait_until(lambda: worker.check() and len(_journal(settings)) >= 1, 300, "the start-up load")
    first = _journal(settings)[0]
    attacks: dict[str, Any] = {}
    for i, (name, make) in enumerate(ATTACKS.items()):
        path = make(good, outside)
        seen = len(_journal(settings))
        started = time.monotonic()
        publish_update(settings.kafka, settings.topic_model_updates,
                       ModelUpdate(Path(path).name, path))  # fmt: skip
        wait_until(lambda s=seen: worker.check() and len(_journal(settings)) > s, 180, name)
        decision = _journal(settings)[0]
        attacks[name] = {
            "refused": not decision["accepted"] and decision["path"] == path,
            "reason": decision["reason"],
            "decided_s": round(time.monotonic() - started, 2),
            "kept_serving": _serves(settings, good.name, i),
        }
    code_ran = sorted(p.name for p in outside.glob("*-ran"))
    refused = sum(a["refused"] for a in attacks.values())
    kept = sum(a["kept_serving"] for a in attacks.values())
    return {
        "summary": f"{refused}/{len(attacks)} refused, kept serving after {kept}",
        "serving": first["version"] if first["accepted"] else None,
        "attacks": attacks,
        "refused": refused,
        "kept_serving": kept,
        "code_from_a_file_ran": code_ran,
        "crashes": worker.crashes + worker.agent_crashes() + (worker.stop() != 0),
    }
