"""``streamrec train-session``: the session-model trainer (``models.session.train_cli``) wired to
Kafka. The learning code takes its topic reader and its announcer as arguments, so ``models/``
imports nothing from the app; this command supplies the Kafka ones from the settings.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from models.session import train_cli
from stream_app.settings import Settings

log = logging.getLogger("streamrec.train_session")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    train_cli.add_arguments(parser)


def adapters(args: argparse.Namespace) -> train_cli.Adapters:
    """The events topic as the ``kafka`` dataset; announcements on the model-updates topic when
    ``--publish`` is ``always``, or ``auto`` and a Kafka bootstrap is configured."""
    settings: Settings = args.settings

    def read_topic() -> tuple[list[Any], int]:
        from stream_app.kafka.event_log import read_topic as read

        # The newest TRAIN_WINDOW_EVENTS per partition hold the topic's newest that many.
        snapshot = read(
            settings.kafka,
            settings.topic_events,
            timeout_s=args.kafka_timeout_s,
            tail=settings.train_window_events,
        )
        log.info(
            "read %d events from topic %r (%d invalid skipped; newest %s per partition)",
            len(snapshot.events),
            settings.topic_events,
            snapshot.invalid,
            settings.train_window_events or "all",
        )
        return snapshot.events, snapshot.invalid

    def announce(version: str, path: str, metrics: dict[str, float]) -> None:
        from stream_app.kafka.model_updates import ModelUpdate, publish_update

        update = ModelUpdate(version, path, metrics)
        publish_update(settings.kafka, settings.topic_model_updates, update)
        log.info("announced %s on %r", version, settings.topic_model_updates)

    publish = args.publish == "always" or (
        args.publish == "auto" and Settings.is_set("kafka_bootstrap")
    )
    return train_cli.Adapters(read_topic, announce if publish else None)


def run(args: argparse.Namespace) -> int:
    return train_cli.run(args, adapters(args))
