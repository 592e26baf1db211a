"""``streamrec rebuild-cache``: make every worker rebuild what its tables hold in Redis now.

The workers rebuild on their own when Redis lost its data (``stream_app.worker.rebuild``);
this is the force switch: it deletes the generation marker, which is how an emptied Redis looks
to them, so each worker rebuilds its partitions at its next check (``CACHE_CHECK_S``) without
any message to route. Rebuilding an intact cache is harmless (lists are recomputed, trending
seeds only absent items, marks only move up). ``--wait S`` waits until every partition's
users' lists are rebuilt. What is rebuilt: docs/stream.md, "Redis lost its data".
"""

from __future__ import annotations

import argparse
import sys
import time

from stream_app.cache import CacheKeys, CacheUnavailable, RecCache, open_cache
from stream_app.settings import Settings, redact_url
from stream_app.worker.rebuild import STAGES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds to wait until every partition is rebuilt (default 0: do not wait)",
    )


def run(args: argparse.Namespace) -> int:
    settings: Settings = args.settings
    store = open_cache(settings.redis, CacheKeys.for_settings(settings))
    try:
        store.drop_generation()
        print("generation marker deleted: every worker rebuilds its partitions at its next check")
        if args.wait <= 0:
            return 0
        started = time.monotonic()
        missing = _wait_rebuilt(store, settings.event_partitions, args.wait)
    except CacheUnavailable as exc:
        print(
            f"streamrec rebuild-cache: Redis at {redact_url(settings.redis_url)}: {exc}",
            file=sys.stderr,
        )
        return 1
    finally:
        store.close()
    if missing:
        print(
            f"streamrec rebuild-cache: not rebuilt within {args.wait:g} s: {', '.join(missing)} "
            "(is a worker running?)",
            file=sys.stderr,
        )
        return 1
    print(f"rebuilt every partition in {time.monotonic() - started:.1f} s")
    return 0


def _wait_rebuilt(store: RecCache, partitions: int, wait_s: float) -> list[str]:
    """The stages and partitions (``users:3``) not rebuilt under the marker's new token
    within ``wait_s`` (read only: the marker is the workers' to create)."""
    deadline = time.monotonic() + wait_s
    wanted = [f"{stage}:{p}" for stage in STAGES for p in range(partitions)]
    while True:
        fields = store.generation(None)
        token = fields.get("token")
        missing = [name for name in wanted if not token or fields.get(name) != token]
        if not missing or time.monotonic() >= deadline:
            return missing
        time.sleep(0.25)
