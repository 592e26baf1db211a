"""``streamrec api``: serve the read API (recommendations, similar items, health, metrics)."""

from __future__ import annotations

import argparse
import logging

from aiohttp import web

from stream_app.api.health import HealthPolicy
from stream_app.api.lag import LagProbe
from stream_app.api.server import DEFAULT_PORT, make_app
from stream_app.api.store import RedisReadStore
from stream_app.cache.keys import CacheKeys
from stream_app.settings import redact_url

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="bind address (default STREAMREC_WEB_HOST)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})"
    )


def run(args: argparse.Namespace) -> int:
    settings = args.settings
    host = args.host or settings.web_host
    store = RedisReadStore(
        settings.redis,
        CacheKeys.for_settings(settings),
        half_life_s=settings.popularity_half_life_s,
    )
    # The worker group reads the events topic and its own item-deltas topic.
    probe = LagProbe(
        settings.kafka,
        settings.app_id,
        [settings.topic_events, settings.topic_item_deltas],
    )
    log.info("read API on http://%s:%d (redis %s)", host, args.port, redact_url(settings.redis_url))
    policy = HealthPolicy(settings.health_worker_stale_s, settings.health_lag_window_s)
    app = make_app(store, probe, ranker_partitions=settings.event_partitions, health_policy=policy)
    web.run_app(app, host=host, port=args.port, print=None, access_log=None)
    return 0
