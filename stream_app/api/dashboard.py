"""The live dashboard: one page (our own HTML, CSS and script, shipped in ``static/``) that polls
``/dashboard/state`` every second, and the JSON routes behind it.

The state is built from one telemetry snapshot read, parsed as ``/metrics`` parses it, so the
page and a scrape at the same moment agree; the history behind the plots is the sampler's
(``stream_app.api.sampler``). Redis down still answers the state (``redis_up`` false, the lag
and the history stand), as ``/metrics`` does. Routes and shapes: docs/api.md, "Dashboard".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import web

from stream_app.api.context import (
    LAG_KEY,
    PARTITIONS_KEY,
    STORE_KEY,
    checked_id,
    parse_n,
)
from stream_app.api.journals import DeadLetterEntry, ModelDecision
from stream_app.api.sampler import Sampler, lag_total
from stream_app.api.store import ReadStore
from stream_app.cache.base import CacheUnavailable
from stream_app.cache.telemetry import (
    FRESHNESS_BUCKETS_MS,
    RankerStats,
    TelemetrySnapshot,
    bucket_field,
)

#: The newest dead letters and model decisions the state carries (the journals hold 20 and 50).
DEAD_LETTERS_SHOWN = 10


DECISIONS_SHOWN = 20


#: The page's files, served from the package: name -> content type.
ASSETS: Mapping[str, str] = {
    "dashboard.html": "text/html",
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
}


#: Nothing but this origin: the page fetches nothing from the internet, and data put in the DOM
#: cannot load or run anything even if an escape were missed.
PAGE_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


SAMPLER_KEY: web.AppKey[Sampler | None] = web.AppKey("sampler")


ASSETS_KEY: web.AppKey[Mapping[str, bytes]] = web.AppKey("dashboard_assets")


def load_assets() -> dict[str, bytes]:
    """The page's files, read once when the app is made (a missing file stops start-up)."""
    static = resources.files("stream_app.api").joinpath("static")
    return {name: static.joinpath(name).read_bytes() for name in ASSETS}


@dataclass(frozen=True, slots=True)
class RedisView:
    """What the state reads from Redis, in one go."""

    snapshot: TelemetrySnapshot
    rankers: Sequence[RankerStats] = ()
    dead_letters: Sequence[DeadLetterEntry] = ()
    decisions: Sequence[ModelDecision] = ()


def ranker_json(r: RankerStats) -> dict[str, Any]:
    """A partition's ranker counters and the ratios ``/metrics`` exports."""
    return {
        "partition": r.partition,
        "updates": r.updates,
        "pairs": r.pairs,
        "pairwise_accuracy": r.pairwise_accuracy,
        "mean_log_loss": r.mean_log_loss,
        "learn_s": r.learn_s,
        "learn_s_per_update": r.learn_s_per_update,
    }


def freshness_json(snap: TelemetrySnapshot | None) -> dict[str, Any]:
    """p50/p99 (None without samples) and the non-cumulative buckets, ``le`` as in /metrics.

    >>> f = freshness_json(TelemetrySnapshot(freshness_counts=(2,) + (0,) * 10))
    >>> f["p50_ms"], f["buckets"][0], f["buckets"][-1]
    (2.5, {'le': '5', 'count': 2}, {'le': '+Inf', 'count': 0})
    """
    if snap is None:
        return {"p50_ms": None, "p99_ms": None, "buckets": []}
    return {
        "p50_ms": snap.freshness_quantile(0.5),
        "p99_ms": snap.freshness_quantile(0.99),
        "buckets": [
            {"le": bucket_field(i), "count": count}
            for i, count in zip(
                range(len(FRESHNESS_BUCKETS_MS) + 1), snap.freshness_counts, strict=True
            )
        ],
    }


def state_payload(
    now_ms: int,
    view: RedisView | None,
    lag: Mapping[str, int] | None,
    points: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The ``/dashboard/state`` document; ``view`` None: Redis could not be read.

    >>> s = state_payload(7, None, {"events": 4}, [])
    >>> s["redis_up"], s["events"], s["lag_total"], s["freshness"]["p99_ms"]
    (False, None, 4, None)
    """
    snap = view.snapshot if view is not None else None
    return {
        "now_ms": now_ms,
        "redis_up": snap is not None,
        "events": snap.events if snap else None,
        "dlq": snap.dlq if snap else None,
        "stats": dict(snap.stats) if snap else {},
        "hit_rate_at_10": snap.hit_rate_at_10 if snap else None,
        "hit_rate_at_10_cached": snap.hit_rate_at_10_cached if snap else None,
        "mrr_at_10": snap.mrr_at_10 if snap else None,
        "mrr_at_10_cached": snap.mrr_at_10_cached if snap else None,
        "freshness": freshness_json(snap),
        "workers": len(snap.workers) if snap else None,
        "model_versions": snap.model_versions if snap else {},
        "rankers": [ranker_json(r) for r in view.rankers] if view else [],
        "lag": dict(lag) if lag else None,
        "lag_total": lag_total(lag),
        "dead_letters": [d.to_json_dict() for d in view.dead_letters] if view else [],
        "model_decisions": [d.to_json_dict() for d in view.decisions] if view else [],
        "series": list(points),
    }


def item_payload(
    item_id: str,
    neighbors: Sequence[tuple[str, float]] | None,
    successors: Sequence[tuple[str, float]] | None,
    trending: tuple[int, float] | None,
) -> dict[str, Any]:
    """The ``/dashboard/item/{item_id}`` document; an item nothing is known of has empty lists
    and no rank (a 200, so the page logs no failed request for it).

    >>> p = item_payload("a", [("b", 0.5)], None, (3, 1.25))
    >>> p["neighbors"], p["successors"], p["trending_rank"], p["trending_score"]
    ([{'item_id': 'b', 'score': 0.5}], [], 3, 1.25)
    """
    return {
        "item_id": item_id,
        "neighbors": [{"item_id": i, "score": round(s, 6)} for i, s in neighbors or ()],
        "successors": [{"item_id": i, "score": round(s, 6)} for i, s in successors or ()],
        "trending_rank": trending[0] if trending else None,
        "trending_score": round(trending[1], 6) if trending else None,
    }


async def read_view(store: ReadStore, partitions: int) -> RedisView | None:
    """Everything the state needs from Redis; None when any of it cannot be read (no log: the
    page polls every second, and the sampler reports the outage once)."""
    try:
        snap = await store.snapshot()
        rankers = await store.ranker_states(range(partitions)) if partitions else []
        dead = await store.dead_letters(DEAD_LETTERS_SHOWN)
        decisions = await store.model_decisions(DECISIONS_SHOWN)
    except CacheUnavailable:
        return None
    return RedisView(snap, rankers, dead, decisions)


def _now_ms() -> int:
    return int(time.time() * 1000)


async def index(request: web.Request) -> web.Response:
    raise web.HTTPFound("/dashboard")


def _asset(request: web.Request, name: str) -> web.Response:
    return web.Response(
        body=request.app[ASSETS_KEY][name],
        content_type=ASSETS[name],
        charset="utf-8",
        headers=PAGE_HEADERS,
    )


async def page(request: web.Request) -> web.Response:
    return _asset(request, "dashboard.html")


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in ASSETS or name == "dashboard.html":
        raise web.HTTPNotFound(text=f"no dashboard file {name!r}")
    return _asset(request, name)


async def state(request: web.Request) -> web.Response:
    app = request.app
    now = _now_ms()
    view = await read_view(app[STORE_KEY], app[PARTITIONS_KEY])
    sampler = app[SAMPLER_KEY]
    probe = app[LAG_KEY]
    if sampler is not None:  # the lag at the last sample: the page never waits on Kafka
        lag = sampler.latest_lag
    else:
        lag = await probe.lag() if probe is not None else None
    points = sampler.series() if sampler is not None else []
    return web.json_response(state_payload(now, view, lag, points))


async def item(request: web.Request) -> web.Response:
    item_id = checked_id(request.match_info["item_id"], "item_id")
    n = parse_n(request.query.get("n"))
    store = request.app[STORE_KEY]
    neighbors = await store.neighbors(item_id, n)
    successors = await store.successors(item_id, n)
    trending = await store.trending_rank(item_id, _now_ms())
    return web.json_response(item_payload(item_id, neighbors, successors, trending))


async def sampling(app: web.Application) -> AsyncIterator[None]:
    """Runs the sampler while the app serves (a cleanup context)."""
    sampler = app[SAMPLER_KEY]
    task = asyncio.create_task(sampler.run()) if sampler is not None else None
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def add_dashboard(app: web.Application, sampler: Sampler | None) -> None:
    """Register the page, its files and its JSON routes on ``app``; ``sampler`` None: no history
    (the plots stay empty)."""
    app[SAMPLER_KEY] = sampler
    app[ASSETS_KEY] = load_assets()
    app.router.add_get("/", index)
    app.router.add_get("/dashboard", page)
    app.router.add_get("/dashboard/static/{name}", static)
    app.router.add_get("/dashboard/state", state)
    app.router.add_get("/dashboard/item/{item_id}", item)
    app.cleanup_ctx.append(sampling)
