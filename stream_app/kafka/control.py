"""The ``control`` topic: commands the workers obey, one versioned JSON object per message.

Message v1: ``{"v": 1, "op": "forget_user", "user_id": str, "events_offset": int}``, keyed by
the user id bytes; ``events_offset`` (optional) is the end offset of her partition of the
events topic when the command was issued: every event of hers below it is forgotten, every one
from it on starts a fresh history (docs/stream.md, "Forgetting a user"). The topic has the
events' partition count, so Kafka's partitioner puts the command on her events' partition
number, which Faust assigns to the worker that owns her history. Parsing is pure; the Kafka
helpers below are what ``streamrec forget-user`` and the worker's control side call.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

from models.events import InvalidEvent, valid_id
from stream_app.kafka.clients import kafka_python_options
from stream_app.settings import KafkaAccess

#: The message format this worker reads and ``streamrec forget-user`` writes.
CONTROL_VERSION = 1
OP_FORGET_USER = "forget_user"
_FIELDS = {"v", "op", "user_id", "events_offset"}


class InvalidControl(ValueError):
    """A control message that breaks the contract above; the reason names the rule."""


class OffsetsUnavailable(RuntimeError):
    """Kafka could not say where a partition ends or what the group committed (retry later)."""


@dataclass(frozen=True, slots=True)
class ForgetUser:
    """Forget ``user_id``: her events below ``events_offset`` on her events partition (None:
    whatever that partition holds when the worker reads the command).

    >>> raw = encode_forget(ForgetUser("196", 42))
    >>> raw
    b'{"events_offset":42,"op":"forget_user","user_id":"196","v":1}'
    >>> parse_control(b"196", raw)
    ForgetUser(user_id='196', events_offset=42)
    """

    user_id: str
    events_offset: int | None = None


def encode_forget(command: ForgetUser) -> bytes:
    payload: dict[str, Any] = {"v": CONTROL_VERSION, "op": OP_FORGET_USER}
    payload["user_id"] = command.user_id
    if command.events_offset is not None:
        payload["events_offset"] = command.events_offset
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def parse_control(key: bytes | None, value: bytes | None) -> ForgetUser:
    """Decode and validate one message; raise ``InvalidControl`` naming what is wrong.

    The key must be the user id's bytes: it is what routed the command to the worker that
    holds her history, and a command keyed otherwise may have reached another one.

    >>> parse_control(b"u1", b'{"v": 2, "op": "forget_user", "user_id": "u1"}')
    Traceback (most recent call last):
    ...
    stream_app.kafka.control.InvalidControl: unsupported version 2 (this worker reads v1)
    """
    try:
        payload: Any = json.loads(value if value is not None else b"")
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError) as exc:
        raise InvalidControl(f"not valid UTF-8 JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidControl("message must be a JSON object")
    version = payload.get("v")
    if isinstance(version, bool) or not isinstance(version, int):
        raise InvalidControl("v must be the integer format version")
    if version != CONTROL_VERSION:
        raise InvalidControl(f"unsupported version {version} (this worker reads v1)")
    if payload.get("op") != OP_FORGET_USER:
        raise InvalidControl(f"unknown op {payload.get('op')!r} (known: {OP_FORGET_USER})")
    unknown = sorted(set(payload) - _FIELDS)
    if unknown:
        raise InvalidControl(f"unknown fields {unknown}")
    try:
        user_id = valid_id(payload.get("user_id"), "user_id")
    except InvalidEvent as exc:
        raise InvalidControl(str(exc)) from None
    if key != user_id.encode():
        raise InvalidControl("the message key must be the user_id's UTF-8 bytes")
    offset = payload.get("events_offset")
    if offset is not None and (isinstance(offset, bool) or not isinstance(offset, int)):
        raise InvalidControl("events_offset must be an integer offset")
    if offset is not None and offset < 0:
        raise InvalidControl("events_offset must be >= 0")
    return ForgetUser(user_id, offset)


class EventOffsets:
    """Where each partition of the events topic ends and what the worker group committed on it
    (kafka-python's admin client, blocking: the worker calls it in a thread). Every failure is
    ``OffsetsUnavailable``, which the caller retries."""

    def __init__(self, kafka: KafkaAccess, topic: str, group: str, timeout_s: float = 10.0) -> None:
        self.kafka, self.topic, self.group, self.timeout_s = kafka, topic, group, timeout_s
        self._admin: Any = None

    def _client(self) -> Any:
        if self._admin is None:
            from kafka.admin import KafkaAdminClient

            self._admin = KafkaAdminClient(
                **kafka_python_options(self.kafka),
                client_id=f"{self.group}-control",
                request_timeout_ms=int(self.timeout_s * 1000),
            )
        return self._admin

    def end_offsets(self, partitions: list[int]) -> dict[int, int]:
        """partition -> the offset the next event will get."""
        from kafka import TopicPartition
        from kafka.admin import OffsetSpec

        tps = [TopicPartition(self.topic, p) for p in partitions]
        try:
            ends = self._client().list_partition_offsets(dict.fromkeys(tps, OffsetSpec.LATEST))
        except Exception as exc:
            self.close()
            raise OffsetsUnavailable(f"end offsets of {self.topic}: {exc!r}") from exc
        return {tp.partition: int(ends[tp].offset) for tp in tps}

    def committed(self, partitions: list[int]) -> dict[int, int | None]:
        """partition -> the group's committed offset (the next it will read), None if none."""
        from kafka import TopicPartition

        tps = [TopicPartition(self.topic, p) for p in partitions]
        try:
            got = self._client().list_group_offsets({self.group: tps}).get(self.group, {})
        except Exception as exc:
            self.close()
            raise OffsetsUnavailable(f"committed offsets of {self.group}: {exc!r}") from exc
        out: dict[int, int | None] = {}
        for tp in tps:
            meta = got.get(tp)
            out[tp.partition] = meta.offset if meta is not None and meta.offset >= 0 else None
        return out

    def close(self) -> None:
        if self._admin is not None:
            admin, self._admin = self._admin, None
            # closing a broken client must not hide why it broke
            with contextlib.suppress(Exception):
                admin.close()
