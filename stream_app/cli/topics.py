"""``streamrec topics``: create the Kafka topics the stream app uses, idempotently."""

from __future__ import annotations

import argparse
import sys

from stream_app.kafka.admin import (
    TopicMismatch,
    ensure_topics,
    quiet_kafka_client_logs,
    topic_specs,
)
from stream_app.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the broker (default 30)"
    )


def run(args: argparse.Namespace) -> int:
    settings: Settings = args.settings
    quiet_kafka_client_logs(settings)
    try:
        outcome = ensure_topics(settings, timeout_s=args.timeout)
    except TopicMismatch as exc:
        print(f"streamrec topics: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # broker unreachable or refusing: one line, not a traceback
        print(
            f"streamrec topics: Kafka at {settings.kafka_bootstrap}: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 1
    for spec in topic_specs(settings):
        print(f"{spec.name:<24} {spec.partitions:>3} partition(s)  {outcome[spec.name]}")
    return 0
