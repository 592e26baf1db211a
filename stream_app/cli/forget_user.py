"""``streamrec forget-user ID [ID ...]``: ask the workers to forget users, through the control
topic (``stream_app.kafka.control``).

Each command carries where the user's events partition ends now (``events_offset``): the worker
that owns her history applies it once every event of hers before that offset was processed, so
none of them can bring her back afterwards. ``--wait S`` waits until a worker applied them (the
control topic's marks in Redis pass each command's offset). What is and is not forgotten:
docs/stream.md, "Forgetting a user".
"""

from __future__ import annotations

import argparse
import sys
import time

from models.events import InvalidEvent, valid_id
from models.online.stream.partitions import key_partition
from stream_app.cache import CacheKeys, open_cache
from stream_app.kafka.admin import quiet_kafka_client_logs
from stream_app.kafka.clients import kafka_python_options
from stream_app.kafka.control import EventOffsets, ForgetUser, encode_forget
from stream_app.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user_ids", nargs="+", metavar="ID", help="user ids to forget")
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds to wait until a worker has applied every command (default 0: do not wait)",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the broker (default 30)"
    )


def run(args: argparse.Namespace) -> int:
    settings: Settings = args.settings
    quiet_kafka_client_logs(settings)
    try:
        users = list(dict.fromkeys(valid_id(raw, "user_id") for raw in args.user_ids))
    except InvalidEvent as exc:
        print(f"streamrec forget-user: {exc}", file=sys.stderr)
        return 2
    try:
        sent = _send(settings, users, args.timeout)
    except Exception as exc:  # broker unreachable or refusing: one line, not a traceback
        print(
            f"streamrec forget-user: Kafka at {settings.kafka_bootstrap}: "
            f"{type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 1
    for user, (partition, offset, fence) in sent.items():
        print(f"forget {user}: sent (control {partition}/{offset}, events before offset {fence})")
    if args.wait <= 0:
        return 0
    late = _wait_applied(settings, sent, args.wait)
    if late:
        print(
            f"streamrec forget-user: not applied within {args.wait:g} s: {', '.join(late)} "
            "(is a worker running?)",
            file=sys.stderr,
        )
        return 1
    print(f"forgotten: {', '.join(users)}")
    return 0


def _send(
    settings: Settings, users: list[str], timeout_s: float
) -> dict[str, tuple[int, int, int]]:
    """Send one command per user, each fenced at her events partition's current end; returns
    user -> (control partition, control offset, events offset), once the broker has them."""
    from kafka import KafkaProducer

    n = settings.event_partitions
    partitions = {user: key_partition(user, n) for user in users}
    offsets = EventOffsets(settings.kafka, settings.topic_events, settings.app_id)
    try:
        ends = offsets.end_offsets(sorted(set(partitions.values())))
    finally:
        offsets.close()
    producer = KafkaProducer(
        **kafka_python_options(settings.kafka),
        acks="all",
        max_block_ms=int(timeout_s * 1000),
        client_id="streamrec-forget-user",
    )
    try:
        futures = {
            user: producer.send(
                settings.topic_control,
                key=user.encode(),
                value=encode_forget(ForgetUser(user, ends[partitions[user]])),
            )
            for user in users
        }
        out = {}
        for user, future in futures.items():
            meta = future.get(timeout=timeout_s)
            out[user] = (meta.partition, meta.offset, ends[partitions[user]])
        return out
    finally:
        producer.close(timeout=timeout_s)


def _wait_applied(
    settings: Settings, sent: dict[str, tuple[int, int, int]], wait_s: float
) -> list[str]:
    """The users whose command no worker applied within ``wait_s`` (a deferred command is
    applied as its copy, further on in the same partition, so the marks pass it too)."""
    store = open_cache(settings.redis, CacheKeys.for_settings(settings))
    deadline = time.monotonic() + wait_s
    try:
        while True:
            marks = store.read_hwm(settings.topic_control)
            late = [u for u, (p, o, _) in sent.items() if marks.get(p, -1) < o]
            if not late or time.monotonic() >= deadline:
                return late
            time.sleep(0.25)
    finally:
        store.close()
