"""``streamrec watch``: what the live path is doing, every few seconds, from the outside.

Reads only what any operator could read: the worker's counters and recommendations in Redis,
and the worker's committed offsets in Kafka (consumer lag = end offset - committed offset,
summed over the events topic's partitions). It never talks to the worker process itself.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from models.online.stream.reasons import reason_source, titled
from stream_app.cache.base import CacheUnavailable, UserRecs
from stream_app.cache.connect import mget
from stream_app.cache.keys import CacheKeys
from stream_app.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One tick of the watch: rates are over the time since the previous tick."""

    elapsed_s: float
    events_total: int
    events_per_s: float
    lag: int | None
    dlq_total: int
    users: Sequence[UserRecs]
    #: item id -> title, for the items shown and those their reasons name (the catalog's)
    titles: Mapping[str, str] = field(default_factory=dict)


def format_snapshot(snap: Snapshot, per_user: int = 5) -> str:
    """Human-readable lines of one tick.

    >>> from stream_app.cache.base import Recommendation
    >>> s = Snapshot(4.0, 1200, 300.0, 15, 2,
    ...              [UserRecs("u1", (Recommendation("i9", 1.5, "trending now"),))])
    >>> print(format_snapshot(s))
    [   4.0s] events 1200 (300.0/s)  lag 15  dlq 2
              u1: i9 (1.50, trending now)
    >>> r = Recommendation("50", 0.8, "because you viewed 172")
    >>> t = {"50": "Star Wars (1977)", "172": "Empire Strikes Back, The (1980)"}
    >>> print(format_snapshot(Snapshot(1.0, 1, 1.0, 0, 0, [UserRecs("u1", (r,))], t)))
    [   1.0s] events 1 (1.0/s)  lag 0  dlq 0
              u1: Star Wars (1977) (0.80, because you viewed Empire Strikes Back, The (1980))
    """
    lag = "?" if snap.lag is None else str(snap.lag)
    lines = [
        f"[{snap.elapsed_s:6.1f}s] events {snap.events_total} ({snap.events_per_s:.1f}/s)  "
        f"lag {lag}  dlq {snap.dlq_total}"
    ]
    for recs in snap.users:
        names = snap.titles
        shown = ", ".join(
            f"{names.get(r.item_id, r.item_id)} ({r.score:.2f}, {titled(r.reason, names)})"
            for r in recs.items[:per_user]
        )
        lines.append(f"{'':10}{recs.user_id}: {shown or '(none)'}")
    return "\n".join(lines)


def pick_users(
    client: Any, keys: CacheKeys, n: int, since_ms: int, max_scan: int = 20_000
) -> list[str]:
    """Up to ``n`` users whose recommendations were written at or after ``since_ms``.

    "Live" users only: a keyspace shared with earlier runs (another dataset replayed before)
    still holds their lists until the TTL, and those would never change on screen.
    Stable choice: the smallest user ids among the fresh ones. On a cluster ``scan_iter``
    walks every master and ``mget`` reads slot by slot.
    """
    users: list[str] = []
    for key in client.scan_iter(match=keys.recs_pattern, count=1000):
        users.append(keys.user_from_recs_key(key.decode()))
        if len(users) >= max_scan:
            break
    fresh: list[str] = []
    for start in range(0, len(users), 500):
        chunk = users[start : start + 500]
        for user, raw in zip(chunk, mget(client, [keys.recs(u) for u in chunk]), strict=True):
            if raw is not None and UserRecs.from_json(raw).computed_at >= since_ms:
                fresh.append(user)
    return sorted(fresh)[:n]


def _titles(cache: Any, users: Sequence[UserRecs], per_user: int = 5) -> dict[str, str]:
    """Titles of the items shown and of the items their reasons name (one catalog read)."""
    shown = [r for recs in users for r in recs.items[:per_user]]
    ids = [r.item_id for r in shown] + [s for r in shown if (s := reason_source(r.reason))]
    return {i: m.title for i, m in cache.get_item_meta(list(dict.fromkeys(ids))).items() if m.title}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between lines")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after S s (0: never)")
    parser.add_argument(
        "--users",
        type=int,
        default=3,
        help="how many users' recs to show, picked among those updated while watching",
    )
    parser.add_argument("--user", action="append", default=[], help="show this user (repeatable)")
    parser.add_argument("--group", help="consumer group to measure lag of (default: app id)")


def run(args: argparse.Namespace) -> int:
    from kafka.admin import KafkaAdminClient

    from stream_app.cache.redis_backend import RedisCache
    from stream_app.kafka.admin import consumer_lag, quiet_kafka_client_logs
    from stream_app.kafka.clients import kafka_python_options

    settings: Settings = args.settings
    quiet_kafka_client_logs(settings)
    keys = CacheKeys.for_settings(settings)
    cache = RedisCache(settings.redis, keys, retries=2)
    admin = KafkaAdminClient(**kafka_python_options(settings.kafka), client_id="streamrec-watch")
    group = args.group or settings.app_id
    users: list[str] = list(args.user)
    start = prev_t = time.monotonic()
    started_ms = int(time.time() * 1000)
    prev_events: int | None = None
    try:
        while True:
            time.sleep(args.interval)
            now = time.monotonic()
            try:
                stats = cache.get_stats()
                if len(users) < args.users:
                    more = pick_users(cache.client, keys, args.users, started_ms)
                    users.extend(u for u in more if u not in users)
                    users = users[: max(args.users, len(args.user))]
                recs = [r for r in (cache.get_recs(u) for u in users) if r is not None]
                titles = _titles(cache, recs)
            except CacheUnavailable as exc:
                print(f"[{now - start:6.1f}s] redis unavailable: {exc}", flush=True)
                continue
            events = stats["events"]
            rate = 0.0 if prev_events is None else (events - prev_events) / (now - prev_t)
            prev_events, prev_t = events, now
            snap = Snapshot(
                now - start,
                events,
                rate,
                consumer_lag(admin, group, settings.topic_events),
                stats["dlq"],
                recs,
                titles,
            )
            print(format_snapshot(snap), flush=True)
            if args.duration and now - start >= args.duration:
                return 0
    except KeyboardInterrupt:
        return 0
    finally:
        admin.close()
        cache.close()
