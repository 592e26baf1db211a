"""The read API's routes: a small aiohttp service that serves what the workers wrote to Redis.

A separate serving process (Gorse's split of compute and serve): it never consumes Kafka or
loads a model, so it starts in a fraction of a second, scales by copies behind a load balancer,
and a slow client never stalls a consumer. Errors are ``{"error": ..., "detail": ...}``; Redis
down gives 503, never a crash. Endpoints and curl examples: docs/api.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from stream_app.api.context import (
    DEFAULT_N,
    HEALTH_KEY,
    LAG_KEY,
    MAX_N,
    PARTITIONS_KEY,
    STORE_KEY,
    BadRequest,
    checked_id,
    parse_n,
)
from stream_app.api.dashboard import SAMPLER_KEY, add_dashboard
from stream_app.api.filters import (
    FILL_DEPTH,
    NO_CATALOG,
    ReadFilters,
    described,
    reason_sources,
    trending_fill,
)
from stream_app.api.health import HealthPolicy, verdict
from stream_app.api.lag import LagProbe
from stream_app.api.metrics import render_metrics
from stream_app.api.sampler import DEFAULT_SAMPLE_S, DEFAULT_WINDOW_S, Sampler
from stream_app.api.store import CachedRecs, CatalogView, ReadStore
from stream_app.cache.base import CacheUnavailable
from stream_app.cache.telemetry import (
    RankerStats,
    TelemetrySnapshot,
)

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_N", "DEFAULT_PORT", "MAX_N", "BadRequest", "make_app", "parse_n"]


DEFAULT_PORT = 8080


#: Appended to the reason of every item a user with nothing cached is served.
UNKNOWN_USER_SUFFIX = " (no history for this user yet)"
UNKNOWN_USER_REASON = "trending now" + UNKNOWN_USER_SUFFIX

#: Items read past ``n`` from the trending ranking and neighbour lists, so that hidden ones
#: dropped from them are replaced by the next (a cached list is read whole: TOP_N items).
HIDDEN_TOP_UP = 20

NO_FILTERS = ReadFilters()


def trending_payload(
    user_id: str,
    trending: Sequence[tuple[str, float]],
    now_ms: int,
    catalog: CatalogView = NO_CATALOG,
    filters: ReadFilters = NO_FILTERS,
    n: int = MAX_N,
) -> dict:
    """The answer for a user with nothing cached (and so no history to show): the first ``n``
    of ``trending`` that ``catalog`` and ``filters`` allow, described by ``catalog``.

    >>> trending_payload("u9", [("a", 2.0)], 5)["items"]
    [{'item_id': 'a', 'score': 2.0, 'reason': 'trending now (no history for this user yet)'}]
    """
    return {
        "user_id": user_id,
        "source": "trending",
        "items": trending_fill(trending, catalog, filters, n, suffix=UNKNOWN_USER_SUFFIX),
        "model_versions": {"trending": "live"},
        "computed_at": now_ms,
        "recent": [],
    }


def cached_payload(
    cached: CachedRecs,
    n: int,
    now_ms: int,
    catalog: CatalogView = NO_CATALOG,
    filters: ReadFilters = NO_FILTERS,
) -> dict:
    """The answer for a user with cached recommendations: the first ``n`` that ``catalog`` and
    ``filters`` allow and that are not in the history the list was computed from (``recent``,
    oldest first; the worker never lists them, a list written otherwise might), described by
    ``catalog``; the rest of the list tops up for the items dropped.

    >>> from stream_app.cache.base import Recommendation, UserRecs
    >>> recs = UserRecs("u1", (Recommendation("i1", 1.0, "r"), Recommendation("i2", 0.5, "r")),
    ...                 {"cf": "v1"}, 1_000)
    >>> p = cached_payload(CachedRecs(recs, ("i0",)), 1, now_ms=1_250)
    >>> [i["item_id"] for i in p["items"]], p["age_ms"], p["source"], p["recent"]
    (['i1'], 250, 'cache', ['i0'])
    """
    recs = cached.recs
    return {
        "user_id": recs.user_id,
        "source": "cache",
        "items": [
            described(r.to_json_dict(), catalog)
            for r in recs.items
            if filters.allows(r.item_id, catalog, cached.recent)
        ][:n],
        "model_versions": dict(recs.model_versions),
        "computed_at": recs.computed_at,
        "age_ms": max(now_ms - recs.computed_at, 0),
        "recent": list(cached.recent),
    }


def _error(status: int, error: str, detail: str) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status)


def _now_ms() -> int:
    return int(time.time() * 1000)


async def recommendations(request: web.Request) -> web.Response:
    """The user's cached list, filtered; with filters, filled from trending up to ``n``."""
    user_id = checked_id(request.match_info["user_id"], "user_id")
    n = parse_n(request.query.get("n"))
    filters = ReadFilters.from_query(request.query)
    store = request.app[STORE_KEY]
    now = _now_ms()
    cached = await store.get_recs(user_id)
    read: int | None = None  # trending items read (None: trending was not needed)
    if cached is None:
        depth = FILL_DEPTH if filters.active else n + HIDDEN_TOP_UP
        trending, catalog = await store.trending_catalog(depth, now)
        payload, read = trending_payload(user_id, trending, now, catalog, filters, n), len(trending)
    else:
        listed = cached.recs.items  # the catalog of the items and of the items reasons name
        catalog = await store.catalog(
            [r.item_id for r in listed] + reason_sources(r.reason for r in listed)
        )
        payload = cached_payload(cached, n, now, catalog, filters)
        items = payload["items"]
        if filters.active and len(items) < n:
            # One round trip for the trending head and its records; never an item already
            # in the answer or in the history the list was computed from.
            trending, catalog = await store.trending_catalog(FILL_DEPTH, now)
            skip = {i["item_id"] for i in items}.union(cached.recent)
            items += trending_fill(trending, catalog, filters, n - len(items), skip)
            read = len(trending)
    if not payload["items"]:
        payload["empty_reason"] = filters.why_empty(cached is not None, read)
    return web.json_response(payload)


async def similar(request: web.Request) -> web.Response:
    item_id = checked_id(request.match_info["item_id"], "item_id")
    n = parse_n(request.query.get("n"))
    store = request.app[STORE_KEY]
    found = await store.neighbors(item_id, n + HIDDEN_TOP_UP)
    if found is None:
        return _error(404, "not_found", f"no neighbours published for item {item_id!r}")
    catalog = await store.catalog([i for i, _ in found])
    shown = [(i, s) for i, s in found if i not in catalog.hidden][:n]
    return web.json_response(
        {
            "item_id": item_id,
            "items": [described({"item_id": i, "score": round(s, 6)}, catalog) for i, s in shown],
        }
    )


async def health(request: web.Request) -> web.Response:
    """``ok`` (200) or ``degraded`` (503) with the reasons (``stream_app.api.health``)."""
    store = request.app[STORE_KEY]
    sampler = request.app[SAMPLER_KEY]
    samples = list(sampler.samples) if sampler is not None else []
    now_ms = _now_ms()
    try:
        await store.ping()
        snap = await store.snapshot()
    except CacheUnavailable as exc:
        reasons = verdict(False, None, now_ms, samples, request.app[HEALTH_KEY])
        body = {"status": "degraded", "reasons": reasons, "redis": "down", "detail": str(exc)}
        return web.json_response(body, status=503)
    newest = snap.newest_report_ms
    reasons = verdict(True, newest, now_ms, samples, request.app[HEALTH_KEY])
    body = {
        "status": "degraded" if reasons else "ok",
        "reasons": reasons,
        "redis": "up",
        "workers": len(snap.workers),
        "last_worker_report_ms_ago": None if newest is None else max(now_ms - newest, 0),
        "model_versions": snap.model_versions,
    }
    return web.json_response(body, status=503 if reasons else 200)


async def metrics(request: web.Request) -> web.Response:
    # Redis down still answers 200 with streamrec_redis_up 0, so the alert can say why.
    store = request.app[STORE_KEY]
    try:
        snap: TelemetrySnapshot | None = await store.snapshot()
    except CacheUnavailable as exc:
        log.warning("metrics scrape without Redis: %s", exc)
        snap = None
    rankers: list[RankerStats] = []
    partitions = request.app[PARTITIONS_KEY]
    if snap is not None and partitions:
        try:
            rankers = await store.ranker_states(range(partitions))
        except CacheUnavailable as exc:  # Redis went between the two reads: the rest stands
            log.warning("ranker states not read: %s", exc)
    from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

    probe = request.app[LAG_KEY]
    lag = await probe.lag() if probe is not None else None
    group = probe.group if probe is not None else ""
    return web.Response(
        body=render_metrics(snap, lag, group, rankers),
        headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4},
    )


@web.middleware
async def errors_as_json(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Sort errors at the boundary: client mistakes 400, Redis down 503, unknown routes 404/405
    as JSON, anything else a logged 500 (the process keeps serving)."""
    try:
        return await handler(request)
    except BadRequest as exc:
        return _error(400, "bad_request", str(exc))
    except CacheUnavailable as exc:
        return _error(503, "unavailable", str(exc))
    except web.HTTPException as exc:
        if exc.status >= 400:
            return _error(exc.status, exc.reason.lower().replace(" ", "_"), exc.text or "")
        raise
    except Exception:
        log.exception("unhandled error on %s", request.path)
        return _error(500, "internal", "unexpected error; see the API log")


def make_app(
    store: ReadStore,
    lag_probe: LagProbe | None = None,
    ranker_partitions: int = 0,
    *,
    sampling: bool = True,
    sample_s: float = DEFAULT_SAMPLE_S,
    window_s: float = DEFAULT_WINDOW_S,
    health_policy: HealthPolicy | None = None,
) -> web.Application:
    """The aiohttp application over a read store (closed when the app shuts down) and, for
    ``/metrics`` and the dashboard, an optional consumer-lag probe and the number of user-side
    partitions whose ranker states to export (0: none). With ``sampling`` the dashboard's
    sampler reads the telemetry every ``sample_s`` and keeps the last ``window_s`` (``/health``
    judges the lag from it). ``health_policy``: ``/health``'s limits (defaults if None)."""
    app = web.Application(middlewares=[errors_as_json])
    app[STORE_KEY] = store
    app[LAG_KEY] = lag_probe
    app[PARTITIONS_KEY] = ranker_partitions
    app[HEALTH_KEY] = health_policy or HealthPolicy()
    app.router.add_get("/recommendations/{user_id}", recommendations)
    app.router.add_get("/similar/{item_id}", similar)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    sampler = Sampler(store, lag_probe, sample_s, window_s) if sampling else None
    add_dashboard(app, sampler)

    async def close_store(app: web.Application) -> None:
        await app[STORE_KEY].close()
        probe = app[LAG_KEY]
        if probe is not None:
            probe.close()

    app.on_cleanup.append(close_store)
    return app
