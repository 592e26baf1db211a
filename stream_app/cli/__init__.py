"""``streamrec`` command line: one subcommand per module, imported only when chosen.

Each command module exposes ``add_arguments(parser)`` and ``run(args) -> int``; importing lazily
keeps ``streamrec produce`` from paying TensorFlow's start-up cost.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from stream_app.settings import ConfigError, Settings

#: subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "topics": ("stream_app.cli.topics", "create the Kafka topics (idempotent)"),
    "produce": ("stream_app.cli.produce", "replay a dataset or file into the events topic"),
    "worker": ("stream_app.cli.worker", "run the Faust stream worker"),
    "watch": ("stream_app.cli.watch", "print throughput, lag and live recommendations"),
    "forget-user": ("stream_app.cli.forget_user", "make the workers forget users (control topic)"),
    "rebuild-cache": (
        "stream_app.cli.rebuild_cache",
        "make the workers rebuild what their tables hold in Redis",
    ),
    "api": ("stream_app.cli.api", "serve the read API (recommendations, similar items, metrics)"),
    "evaluate": ("stream_app.cli.evaluate", "prequential evaluation of the online models"),
    "train-session": ("stream_app.cli.train_session", "train and evaluate the GRU session model"),
    "models": (
        "stream_app.cli.models",
        "the session-model store: list versions, pin one, roll back the serving one",
    ),
}


#: the subcommands that talk to Kafka, whose login is checked before they start
KAFKA_COMMANDS = {"topics", "produce", "worker", "watch", "forget-user", "api", "train-session"}


def _kafka_login_ok(settings: Settings) -> bool:
    """A refused Kafka login (wrong password, user, mechanism or CA) stops the command with one
    line, before a client would retry it as an outage."""
    from stream_app.kafka.clients import KafkaLoginRefused, check_login

    try:
        check_login(settings.kafka)
    except KafkaLoginRefused as exc:
        print(f"streamrec: Kafka login refused: {exc}", file=sys.stderr)
        return False
    return True


#: the subcommands that read or write Redis, whose login is checked before they start
REDIS_COMMANDS = {"worker", "watch", "api", "rebuild-cache"}


def _redis_login_ok(settings: Settings) -> bool:
    """A refused Redis login (wrong user or password, a user without the rights) stops the
    command with one line: redis-py counts it as a connection error, which the worker would
    retry as an outage for ever. A Redis that is down is let through (the commands wait)."""
    import redis

    from stream_app.cache.connect import connect_redis

    try:  # a cluster client asks for the slot map as it is made: no node answering is "down"
        client = connect_redis(settings.redis, socket_connect_timeout=3, socket_timeout=3)
    except redis.exceptions.RedisClusterUnreachableError:
        return True
    try:
        client.ping()
    except (redis.AuthenticationError, redis.ResponseError) as exc:
        print(f"streamrec: Redis login refused: {exc}", file=sys.stderr)
        return False
    except (redis.RedisError, redis.exceptions.RedisClusterException):
        pass
    finally:
        client.close()
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamrec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(_module=module_name)
        # Arguments are added lazily in main() for the chosen command only.
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    known, _ = parser.parse_known_args(args_list[:1] or ["--help"])
    module = importlib.import_module(known._module)
    command_parser = argparse.ArgumentParser(
        prog=f"streamrec {known.command}", description=COMMANDS[known.command][1]
    )
    module.add_arguments(command_parser)
    args = command_parser.parse_args(args_list[1:])
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"streamrec: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if known.command in KAFKA_COMMANDS and not _kafka_login_ok(settings):
        return 2
    if known.command in REDIS_COMMANDS and not _redis_login_ok(settings):
        return 2
    args.settings = settings
    return int(module.run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
