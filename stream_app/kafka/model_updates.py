"""The ``model-updates`` topic: one JSON message per new session-model version.

Message: ``{"version": str, "path": str, "metrics": {name: number}}``, keyed by the version. The
trainer publishes after the version directory is complete (renamed into the store), so a consumer
that receives a message can load the path at once; it must still verify it (``load_session_model``)
because a message is an announcement, not a guarantee. Parsing never touches the filesystem and
returns the path as sent: whether it names a version inside the model store is the model slot's
check (``ModelSlot.offer``), made before anything is opened.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from stream_app.kafka.clients import kafka_python_options
from stream_app.settings import KafkaAccess

#: Linux's PATH_MAX: no real version path is longer.
MAX_PATH_CHARS = 4096


class InvalidUpdate(ValueError):
    """A model-updates message that does not follow the contract above."""


@dataclass(frozen=True, slots=True)
class ModelUpdate:
    """One announcement.

    >>> raw = encode_update(ModelUpdate("20261123T050000Z-ab12cd34", "/m/v1", {"mrr@20": 0.1}))
    >>> parse_update(raw).metrics
    {'mrr@20': 0.1}
    """

    version: str
    path: str
    metrics: dict[str, float] = field(default_factory=dict)


def encode_update(update: ModelUpdate) -> bytes:
    payload = {"version": update.version, "path": update.path, "metrics": dict(update.metrics)}
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


def parse_update(raw: bytes) -> ModelUpdate:
    """Decode and validate one message; raise ``InvalidUpdate`` naming what is wrong."""
    try:
        payload: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidUpdate(f"not valid UTF-8 JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidUpdate("message must be a JSON object")
    version, path, metrics = payload.get("version"), payload.get("path"), payload.get("metrics")
    if not isinstance(version, str) or not version:
        raise InvalidUpdate("version must be a non-empty string")
    if not isinstance(path, str) or not path:
        raise InvalidUpdate("path must be a non-empty string")
    if "\x00" in path or len(path) > MAX_PATH_CHARS:
        raise InvalidUpdate(f"path must have no NUL byte and at most {MAX_PATH_CHARS} characters")
    if metrics is None:
        metrics = {}
    if not isinstance(metrics, dict) or not all(
        isinstance(k, str)
        and isinstance(v, int | float)
        and not isinstance(v, bool)
        and math.isfinite(v)
        for k, v in metrics.items()
    ):
        raise InvalidUpdate("metrics must map names to finite numbers")
    return ModelUpdate(
        version=version, path=path, metrics={k: float(v) for k, v in metrics.items()}
    )


def publish_update(
    kafka: KafkaAccess, topic: str, update: ModelUpdate, timeout_s: float = 10.0
) -> None:
    """Send one announcement and wait for the broker's acknowledgement (kafka-python)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        **kafka_python_options(kafka),
        acks="all",
        max_block_ms=int(timeout_s * 1000),
        client_id="streamrec-trainer",
    )
    try:
        future = producer.send(topic, key=update.version.encode(), value=encode_update(update))
        future.get(timeout=timeout_s)
        producer.flush(timeout=timeout_s)
    finally:
        producer.close(timeout=timeout_s)
