"""The demo's last step: wait for the worker's verdict on the version the trainer just saved,
print it ("session model X swapped in", or the refusal with its reason), then a list written
with that version (the user's whose top 10 holds the most "based on your current session" items).

    python scripts/demo_swap.py RESULTS_JSON WORKER_LOG [--timeout 90]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from models.online.stream import SESSION_REASON
from models.online.stream.reasons import titled
from stream_app.cache import CacheKeys, UserRecs
from stream_app.cache.connect import connect_redis
from stream_app.settings import Settings


def verdict(log: Path, version: str, since: int) -> str | None:
    """The worker's log line deciding ``version`` after byte ``since``, if any yet."""
    text = log.read_bytes()[since:].decode("utf-8", "replace")
    for line in text.splitlines():
        if version in line and ("swapped in" in line or "refused" in line):
            return line
    return None


def session_list(settings: Settings, version: str) -> UserRecs | None:
    """A user's list blended by ``version`` with the most session-reason items, if any yet."""
    keys = CacheKeys(settings.redis_key_prefix)
    client = connect_redis(settings.redis)
    try:
        names = list(client.scan_iter(match=keys.recs_pattern, count=1000))
        best: tuple[int, UserRecs] | None = None
        for raw in client.mget(names) if names else []:
            if raw is None:
                continue
            recs = UserRecs.from_json(raw)
            hits = sum(r.reason == SESSION_REASON for r in recs.items[:10])
            if recs.model_versions.get("session") == version and hits:
                best = max(best or (hits, recs), (hits, recs), key=lambda pair: pair[0])
        return None if best is None else best[1]
    finally:
        client.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("results", type=Path)
    parser.add_argument("log", type=Path)
    parser.add_argument("--since", type=int, default=0, help="worker log offset (bytes)")
    parser.add_argument("--timeout", type=float, default=90.0)
    args = parser.parse_args()
    version = json.loads(args.results.read_text())["artifact"]["version"]
    settings = Settings.from_env()
    deadline = time.monotonic() + args.timeout
    line = None
    while line is None and time.monotonic() < deadline:
        line = verdict(args.log, version, args.since)
        time.sleep(0.5)
    if line is None:
        print(f"demo: no decision on session model {version} yet (see {args.log})")
        return 1
    if "refused" in line:
        print(f"demo: session model {version} refused: {line.split('refused', 1)[1].strip()}")
        return 1
    print(f"demo: session model {version} swapped in")
    recs = None
    while recs is None and time.monotonic() < deadline:
        recs = session_list(settings, version)
        time.sleep(1.0)
    if recs is None:
        print("demo: no list blended by it yet (lists refresh as users' events arrive)")
        return 1
    print(f"demo: user {recs.user_id}'s list, blended by session model {version}:")
    names = titles(settings, recs)
    for n, rec in enumerate(recs.items[:10], start=1):
        title = names.get(rec.item_id, rec.item_id)
        print(f"  {n:2d}. {title:<45} {rec.score:6.3f}  {titled(rec.reason, names)}")
    return 0


def titles(settings: Settings, recs: UserRecs) -> dict[str, str]:
    """Item titles from the catalog the demo published (as ``streamrec watch`` shows them)."""
    from stream_app.cache.redis_backend import RedisCache
    from stream_app.cli.watch import _titles

    cache = RedisCache(settings.redis, CacheKeys(settings.redis_key_prefix), retries=2)
    try:
        return _titles(cache, [recs], per_user=10)
    finally:
        cache.close()


if __name__ == "__main__":
    sys.exit(main())
