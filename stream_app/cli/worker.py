"""``streamrec worker``: create the topics if missing, then run the Faust worker in this process.

Programmatic rather than ``faust -A ... worker`` so one settings object configures everything
(bind address, log level, partitions) and a bad setting or an events topic of the wrong shape
stops start-up with one clear message. SIGTERM and SIGINT stop the worker cleanly: Faust's
worker (mode) traps them, commits offsets of processed batches and closes the consumer.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from pathlib import Path

from stream_app.kafka.admin import quiet_kafka_client_logs
from stream_app.settings import Settings, redact_url

log = logging.getLogger(__name__)

#: ``gc.set_threshold`` for the worker: CPython's (700, 10, 10) with full collections 100 times
#: rarer. The worker's heap is mostly long-lived table rows, user histories and cached item
#: lists, and each full collection walks all of it, pausing the stream; young collections are
#: left as they are (a larger first generation cost more). Measured: docs/stream.md, "Tuning".
GC_THRESHOLDS = (700, 10, 1000)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-create-topics",
        action="store_true",
        help="do not create missing topics first (they must exist)",
    )
    parser.add_argument(
        "--topics-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the broker when creating topics (default 60)",
    )


def run(args: argparse.Namespace) -> int:
    settings: Settings = args.settings
    quiet_kafka_client_logs(settings)
    if not args.no_create_topics:
        from stream_app.kafka.admin import TopicMismatch, ensure_topics

        try:
            outcome = ensure_topics(settings, timeout_s=args.topics_timeout)
        except TopicMismatch as exc:
            print(f"streamrec worker: {exc}", file=sys.stderr)
            return 1
        except Exception as exc:  # the broker is unreachable or refuses: say so plainly
            print(
                f"streamrec worker: cannot create topics on {settings.kafka_bootstrap}: "
                f"{type(exc).__name__}: {exc}",
                file=sys.stderr,
            )
            return 1
        log.info("topics: %s", ", ".join(f"{k} ({v})" for k, v in outcome.items()))

    import faust

    from stream_app.worker.app import create_app

    app = create_app(settings)
    gc.set_threshold(*GC_THRESHOLDS)
    # Faust creates its data dir but not the parents of it.
    Path(app.conf.datadir).parent.mkdir(parents=True, exist_ok=True)
    worker = faust.Worker(
        app,
        loglevel=settings.log_level.lower(),
        # Faust's default redirects print() into the log; keep stdout for our own lines.
        redirect_stdouts=False,
    )
    log.info(
        "worker %s: %s -> redis %s (web http://%s:%d)",
        settings.app_id,
        settings.topic_events,
        redact_url(settings.redis_url),
        settings.web_host,
        settings.web_port,
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
