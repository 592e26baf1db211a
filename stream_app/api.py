"""The read API: a small aiohttp service that serves what the workers wrote to Redis.

One choice, and why: a separate serving process that serves from Redis only (Gorse's split of
compute and serve). It never consumes Kafka or loads the models (its one Kafka call is the
``/metrics`` consumer-lag read, cached, off the recommendation path), so it starts in a fraction
of a second, scales by running more copies behind a load balancer independently of the
workers, and a slow client
can never stall a consumer's heartbeat. aiohttp because it is already installed (Faust depends
on it) and redis-py's asyncio client keeps every request non-blocking.

Endpoints (JSON unless said otherwise; errors are ``{"error": ..., "detail": ...}``):

- ``GET /recommendations/{user_id}?n=10``: the user's cached top-N with scores, reasons, model
  versions and ``computed_at``; a user with nothing cached gets trending items with the reason
  ``trending now (no history for this user yet)``.
- ``GET /similar/{item_id}?n=10``: the item's neighbours; 404 when none are published.
- ``GET /health``: Redis PING and the model versions the live workers report; 503 if Redis is down.
- ``GET /metrics``: Prometheus text format (counters, the freshness histogram, online HitRate@10
  and MRR@10, the worker group's consumer lag, and each user-side partition's ranker: updates,
  pairs, online pairwise accuracy and log loss, learning CPU per update).

``n`` must be an integer 1..100 (400 otherwise). Redis down or timing out gives 503, never a crash.

Run it: ``streamrec api [--host H] [--port 8080]``; docs/api.md has curl examples.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from stream_app.cache.base import CacheUnavailable, UserRecs
from stream_app.cache.keys import STAT_NAMES, CacheKeys
from stream_app.cache.trending import decayed_ranking
from stream_app.telemetry import (
    FRESHNESS_BUCKETS_MS,
    WORKER_TTL_S,
    RankerStats,
    TelemetryKeys,
    TelemetrySnapshot,
    bucket_field,
    cumulative,
    parse_snapshot,
    ranker_stats,
)

log = logging.getLogger(__name__)

DEFAULT_PORT = 8080
DEFAULT_N = 10
MAX_N = 100
UNKNOWN_USER_REASON = "trending now (no history for this user yet)"
STORE_KEY: web.AppKey[ReadStore] = web.AppKey("store")
LAG_KEY: web.AppKey[LagProbe | None] = web.AppKey("lag_probe")
PARTITIONS_KEY: web.AppKey[int] = web.AppKey("ranker_partitions")


class BadRequest(ValueError):
    """A client error; the message is returned to the client."""


def parse_n(raw: str | None, default: int = DEFAULT_N, max_n: int = MAX_N) -> int:
    """The ``n`` query parameter, validated (1..``max_n``).

    >>> parse_n(None), parse_n("25")
    (10, 25)
    >>> parse_n("0")
    Traceback (most recent call last):
    ...
    stream_app.api.BadRequest: n must be an integer between 1 and 100
    """
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= max_n:
        raise BadRequest(f"n must be an integer between 1 and {max_n}")
    return value


def parse_neighbors(raw: Any) -> list[tuple[str, float]]:
    """Neighbours stored as a JSON string, best first: ``[[item, score], ...]`` or
    ``{"items": [{"item_id", "score"}, ...]}`` (the sorted-set form is read natively).

    >>> parse_neighbors(b'[["b", 0.5], ["c", 0.25]]')
    [('b', 0.5), ('c', 0.25)]
    >>> parse_neighbors('{"items": [{"item_id": "b", "score": 0.5}]}')
    [('b', 0.5)]
    """
    data = json.loads(raw)
    if isinstance(data, Mapping):
        data = [(r["item_id"], r["score"]) for r in data.get("items", [])]
    return [(str(item), float(score)) for item, score in data]


def trending_payload(user_id: str, trending: Sequence[tuple[str, float]], now_ms: int) -> dict:
    """The answer for a user with nothing cached.

    >>> trending_payload("u9", [("a", 2.0)], 5)["items"]
    [{'item_id': 'a', 'score': 2.0, 'reason': 'trending now (no history for this user yet)'}]
    """
    return {
        "user_id": user_id,
        "source": "trending",
        "items": [
            {"item_id": item, "score": round(score, 6), "reason": UNKNOWN_USER_REASON}
            for item, score in trending
        ],
        "model_versions": {"trending": "live"},
        "computed_at": now_ms,
    }


def cached_payload(recs: UserRecs, n: int, now_ms: int) -> dict:
    """The answer for a user with cached recommendations (at most ``n`` of them).

    >>> from stream_app.cache.base import Recommendation
    >>> recs = UserRecs("u1", (Recommendation("i1", 1.0, "r"), Recommendation("i2", 0.5, "r")),
    ...                 {"cf": "v1"}, 1_000)
    >>> p = cached_payload(recs, 1, now_ms=1_250)
    >>> [i["item_id"] for i in p["items"]], p["age_ms"], p["source"]
    (['i1'], 250, 'cache')
    """
    return {
        "user_id": recs.user_id,
        "source": "cache",
        "items": [r.to_json_dict() for r in recs.items[:n]],
        "model_versions": dict(recs.model_versions),
        "computed_at": recs.computed_at,
        "age_ms": max(now_ms - recs.computed_at, 0),
    }


# --------------------------------------------------------------------------- the Redis adapter


class ReadStore(Protocol):
    """What the API reads. ``RedisReadStore`` in production, a fake in unit tests. Every method
    raises ``CacheUnavailable`` when the store cannot be reached."""

    async def get_recs(self, user_id: str) -> UserRecs | None: ...

    async def trending(self, n: int, now_ms: int) -> list[tuple[str, float]]: ...

    async def neighbors(self, item_id: str, n: int) -> list[tuple[str, float]] | None: ...

    async def ping(self) -> bool: ...

    async def snapshot(self) -> TelemetrySnapshot: ...

    async def ranker_states(self, partitions: Sequence[int]) -> list[RankerStats]:
        """The rankers' counters of these partitions; none stored yet or damaged: left out."""
        ...

    async def close(self) -> None: ...


class RedisReadStore:
    """Reads the worker-written keys with redis-py's asyncio client.

    Fails fast (one retry, 1 s timeouts) rather than retrying for seconds like the worker's
    cache: an API caller would rather get a 503 now than a late answer.
    """

    def __init__(
        self,
        url: str,
        keys: CacheKeys | None = None,
        half_life_s: float = 3600.0,
        timeout_s: float = 1.0,
    ) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.keys = keys or CacheKeys()
        self.telemetry_keys = TelemetryKeys(self.keys)
        self.half_life_s = half_life_s
        self._errors: tuple[type[Exception], ...] = (
            aioredis.ConnectionError,
            aioredis.TimeoutError,
            OSError,
        )
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
        )

    async def _call(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await fn()
        except self._errors as exc:
            raise CacheUnavailable(f"redis unavailable: {exc}") from exc

    async def get_recs(self, user_id: str) -> UserRecs | None:
        raw = await self._call(lambda: self._redis.get(self.keys.recs(user_id)))
        return None if raw is None else UserRecs.from_json(raw)

    async def trending(self, n: int, now_ms: int) -> list[tuple[str, float]]:
        async def read() -> tuple[Any, Any]:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(self.keys.trending_epoch)
                pipe.zrevrange(self.keys.trending, 0, n - 1, withscores=True)
                epoch, members = await pipe.execute()
            return epoch, members

        raw_epoch, members = await self._call(read)
        if raw_epoch is None:
            return []
        stored = [(m.decode(), float(s)) for m, s in members]
        # Order by the stored forward score (ties: item id), as the worker does. The decayed
        # score is only for display: on replayed old data it can underflow to 0 at wall-clock now.
        order = {item: i for i, (item, _) in enumerate(sorted(stored, key=lambda p: (-p[1], p[0])))}
        decayed = decayed_ranking(stored, float(raw_epoch), self.half_life_s, now_ms)
        return sorted(decayed, key=lambda p: order[p[0]])[:n]

    async def neighbors(self, item_id: str, n: int) -> list[tuple[str, float]] | None:
        key = self.keys.neighbors(item_id)

        async def read() -> list[tuple[str, float]] | None:
            kind = await self._redis.type(key)
            kind = kind.decode() if isinstance(kind, bytes) else kind
            if kind == "none":
                return None
            if kind == "zset":
                members: Any = await self._redis.zrevrange(key, 0, n - 1, withscores=True)
                return [(m.decode(), float(s)) for m, s in members]
            if kind == "string":
                return parse_neighbors(await self._redis.get(key))[:n]
            raise ValueError(f"{key} has unexpected Redis type {kind}")

        return await self._call(read)

    async def ping(self) -> bool:
        return bool(await self._call(self._redis.ping))

    async def snapshot(self) -> TelemetrySnapshot:
        tk = self.telemetry_keys

        async def read() -> TelemetrySnapshot:
            since = int(time.time() * 1000) - WORKER_TTL_S * 1000
            ids = [
                i.decode() if isinstance(i, bytes) else str(i)
                for i in await self._redis.zrangebyscore(tk.workers, since, "+inf")
            ]
            worker_keys = [tk.worker(i) for i in ids]
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.mget([self.keys.stat(name) for name in STAT_NAMES])
                pipe.hgetall(tk.hitrate)
                pipe.hgetall(tk.freshness)
                for key in worker_keys:
                    pipe.hgetall(key)
                replies = await pipe.execute()
            stat_values, hitrate, freshness, *workers = replies
            stats = {
                n: int(v) if v is not None else 0
                for n, v in zip(STAT_NAMES, stat_values, strict=True)
            }
            # An expired worker hash reads as {}: that worker is gone, leave it out.
            by_worker = {i: w for i, w in zip(ids, workers, strict=True) if w}
            return parse_snapshot(stats, hitrate, freshness, by_worker)

        return await self._call(read)

    async def ranker_states(self, partitions: Sequence[int]) -> list[RankerStats]:
        parts = list(partitions)
        if not parts:
            return []
        raws = await self._call(lambda: self._redis.mget([self.keys.ranker(p) for p in parts]))
        return ranker_stats(parts, raws)

    async def close(self) -> None:
        await self._redis.aclose()


# --------------------------------------------------------------------------- consumer lag


class LagProbe:
    """The workers' consumer-group lag per topic, read from Kafka (not from the workers).

    Why here: lag is what an operator alerts on first, and it must be readable when every worker
    is down (that is when it grows). Each read asks the broker for end offsets and the group's
    committed offsets with kafka-python's admin client (``stream_app.watch.consumer_lag``), in a
    thread; a result is reused for ``ttl_s`` so frequent scrapes cost the broker nothing extra.
    ``topics`` are read in that order; a topic that does not exist (yet) is left out, and with
    Kafka unreachable there are no lag lines at all (a partition the group never committed
    counts whole: a new group reads from the earliest offset).
    """

    def __init__(
        self, bootstrap: str, group: str, topics: Sequence[str], ttl_s: float = 5.0
    ) -> None:
        self.bootstrap = bootstrap
        self.group = group
        self.topics = list(topics)
        self.ttl_s = ttl_s
        self._admin: Any = None
        self._cached: tuple[float, dict[str, int]] | None = None

    def _read(self) -> dict[str, int]:
        from kafka.admin import KafkaAdminClient

        from stream_app.watch import consumer_lag

        try:
            if self._admin is None:
                self._admin = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap.split(","), request_timeout_ms=5000
                )
            lags = {t: consumer_lag(self._admin, self.group, t) for t in self.topics}
        except Exception as exc:  # Kafka down: no lag lines, and reconnect next time
            log.warning("consumer lag unavailable: %r", exc)
            self.close()
            return {}
        return {t: lag for t, lag in lags.items() if lag is not None}

    async def lag(self) -> dict[str, int]:
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > self.ttl_s:
            self._cached = (now, await asyncio.to_thread(self._read))
        return self._cached[1]

    def close(self) -> None:
        if self._admin is not None:
            try:
                self._admin.close()
            finally:
                self._admin = None


# --------------------------------------------------------------------------- Prometheus text


@dataclass(frozen=True, slots=True, eq=False)  # hashed by identity by the registry
class _SnapshotCollector:
    """A one-shot prometheus_client collector over a snapshot read for this scrape."""

    snapshot: TelemetrySnapshot | None
    lag: Mapping[str, int] | None = None
    group: str = ""
    rankers: Sequence[RankerStats] = ()

    def collect(self) -> Any:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        up = GaugeMetricFamily("streamrec_redis_up", "1 if the API could read Redis")
        up.add_metric([], 1.0 if self.snapshot is not None else 0.0)
        yield up
        if self.lag:
            lag = GaugeMetricFamily(
                "streamrec_consumer_lag",
                "Messages of the topic the worker group has not committed yet (from Kafka)",
                labels=["group", "topic"],
            )
            for topic, value in self.lag.items():
                lag.add_metric([self.group, topic], float(value))
            yield lag
        snap = self.snapshot
        if snap is None:
            return
        for name in STAT_NAMES:
            yield CounterMetricFamily(
                f"streamrec_{name}", f"Worker counter stats:{name}", value=snap.stats.get(name, 0)
            )
        # Two online HitRate@10 forms (stream_app.telemetry): "sequential" (sampled events,
        # each against the list cached right before it) is the headline, comparable with the
        # offline prequential figure; "cached" (every event against the list cached before its
        # micro-batch) is what users literally saw. With no trials yet a rate reads 0.
        # MRR@10 stands beside each form over the same trials (rr: sum of 1/rank in the top 10).
        counters = (
            ("seq_hits", "Sampled events whose item was in the top-10 cached right before it"),
            ("seq_trials", "Sampled events judged for the sequential online HitRate@10"),
            ("seq_rr", "Sum over the sequential trials of 1/rank in the top-10 (0 if absent)"),
            ("hits", "Events whose item was in the top-10 cached before their batch"),
            ("trials", "Events judged for the cached online HitRate@10"),
            ("rr", "Sum over the cached trials of 1/rank in the top-10 (0 if absent)"),
        )
        for name, help_text in counters:
            yield CounterMetricFamily(
                f"streamrec_online_{name}", help_text, value=getattr(snap, name)
            )
        rates = (
            (
                "hit_rate_at_10",
                snap.hit_rate_at_10,
                "seq_hits / seq_trials, comparable with offline prequential",
            ),
            (
                "hit_rate_at_10_cached",
                snap.hit_rate_at_10_cached,
                "hits / trials, lists cached before the batch",
            ),
            (
                "mrr_at_10",
                snap.mrr_at_10,
                "seq_rr / seq_trials, comparable with offline prequential MRR@10",
            ),
            (
                "mrr_at_10_cached",
                snap.mrr_at_10_cached,
                "rr / trials, lists cached before the batch",
            ),
        )
        for name, value, help_text in rates:
            rate = GaugeMetricFamily(f"streamrec_online_{name}", help_text)
            rate.add_metric([], value if value is not None else 0.0)
            yield rate
        if self.rankers:
            yield from _ranker_families(self.rankers)
        running = cumulative(snap.freshness_counts)
        buckets = [
            (bucket_field(i), float(running[i])) for i in range(len(FRESHNESS_BUCKETS_MS) + 1)
        ]
        yield HistogramMetricFamily(
            "streamrec_freshness_ms",
            "Event Kafka timestamp to its user's recommendations written, ms",
            buckets=buckets,
            sum_value=snap.freshness_sum_ms,
        )
        for q, label in ((0.5, "p50"), (0.99, "p99")):
            gauge = GaugeMetricFamily(
                f"streamrec_freshness_{label}_ms", f"Freshness {label} estimated from the buckets"
            )
            value = snap.freshness_quantile(q)
            gauge.add_metric([], value if value is not None else float("nan"))
            yield gauge
        workers = GaugeMetricFamily("streamrec_workers", "Workers that reported in the last 60 s")
        workers.add_metric([], float(len(snap.workers)))
        yield workers
        versions = GaugeMetricFamily(
            "streamrec_model_version",
            "1 per model version a live worker serves",
            labels=["model", "version"],
        )
        for model, served in snap.model_versions.items():
            for version in served:
                versions.add_metric([model, version], 1.0)
        yield versions


#: Per-partition ranker series: (kind, name after ``streamrec_ranker_``, ``RankerStats`` field,
#: help). Counters get Prometheus' ``_total`` suffix.
RANKER_METRICS: tuple[tuple[str, str, str, str], ...] = (
    ("counter", "updates", "updates", "Events the partition's ranker learned"),
    ("counter", "pairs", "pairs", "Training pairs the partition's ranker learned"),
    (
        "gauge",
        "pairwise_accuracy",
        "pairwise_accuracy",
        "Share of pairs the ranker ordered right before learning their batch (online)",
    ),
    (
        "gauge",
        "log_loss",
        "mean_log_loss",
        "Mean logistic loss per pair, scored before learning its batch (online, nats)",
    ),
    (
        "gauge",
        "learn_cpu_seconds_per_update",
        "learn_s_per_update",
        "Worker thread CPU seconds of the ranker's own learning, per update",
    ),
    (
        "counter",
        "learn_cpu_seconds",
        "learn_s",
        "Worker thread CPU seconds of the ranker's own learning",
    ),
)


def _ranker_families(rankers: Sequence[RankerStats]) -> Any:
    """One sample per partition and family; a ratio with no denominator yet has no sample."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    for kind, name, attr, help_text in RANKER_METRICS:
        cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        family = cls(f"streamrec_ranker_{name}", help_text, labels=["partition"])
        for ranker in rankers:
            value = getattr(ranker, attr)
            if value is not None:
                family.add_metric([str(ranker.partition)], float(value))
        yield family


def render_metrics(
    snapshot: TelemetrySnapshot | None,
    lag: Mapping[str, int] | None = None,
    group: str = "",
    rankers: Sequence[RankerStats] = (),
) -> bytes:
    """Prometheus text exposition (format 0.0.4) of a snapshot; ``None`` means Redis is down.
    ``lag``: topic -> the worker group's (``group``) consumer lag, from :class:`LagProbe`;
    ``rankers``: the partitions' ranker counters (``ReadStore.ranker_states``).

    >>> from stream_app.telemetry import TelemetrySnapshot
    >>> snap = TelemetrySnapshot(stats={"events": 7}, hits=1, trials=4, seq_hits=1, seq_trials=2)
    >>> lines = render_metrics(snap).decode().splitlines()
    >>> "streamrec_events_total 7.0" in lines, "streamrec_online_hit_rate_at_10 0.5" in lines
    (True, True)
    >>> "streamrec_online_hit_rate_at_10_cached 0.25" in lines
    True
    >>> r = RankerStats(2, updates=10, pairs=40, pairs_correct=30, loss_sum=20.0, learn_s=0.01)
    >>> 'streamrec_ranker_pairwise_accuracy{partition="2"} 0.75' in render_metrics(
    ...     snap, rankers=[r]).decode().splitlines()
    True
    >>> render_metrics(None).decode().splitlines()[-1]
    'streamrec_redis_up 0.0'
    >>> 'streamrec_consumer_lag{group="g",topic="events"} 5.0' in render_metrics(
    ...     None, {"events": 5}, "g").decode().splitlines()
    True
    """
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot, lag, group, rankers))  # type: ignore[arg-type]
    return generate_latest(registry)


# --------------------------------------------------------------------------- handlers


def _error(status: int, error: str, detail: str) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status)


def _now_ms() -> int:
    return int(time.time() * 1000)


async def recommendations(request: web.Request) -> web.Response:
    user_id = request.match_info["user_id"]
    n = parse_n(request.query.get("n"))
    store = request.app[STORE_KEY]
    now = _now_ms()
    recs = await store.get_recs(user_id)
    if recs is not None:
        return web.json_response(cached_payload(recs, n, now))
    return web.json_response(trending_payload(user_id, await store.trending(n, now), now))


async def similar(request: web.Request) -> web.Response:
    item_id = request.match_info["item_id"]
    n = parse_n(request.query.get("n"))
    found = await request.app[STORE_KEY].neighbors(item_id, n)
    if found is None:
        return _error(404, "not_found", f"no neighbours published for item {item_id!r}")
    return web.json_response(
        {
            "item_id": item_id,
            "items": [{"item_id": i, "score": round(s, 6)} for i, s in found],
        }
    )


async def health(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    try:
        await store.ping()
        snap = await store.snapshot()
    except CacheUnavailable as exc:
        return web.json_response(
            {"status": "unavailable", "redis": "down", "detail": str(exc)}, status=503
        )
    return web.json_response(
        {
            "status": "ok",
            "redis": "up",
            "workers": len(snap.workers),
            "model_versions": snap.model_versions,
        }
    )


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
    store: ReadStore, lag_probe: LagProbe | None = None, ranker_partitions: int = 0
) -> web.Application:
    """The aiohttp application over a read store (closed when the app shuts down) and, for
    ``/metrics``, an optional consumer-lag probe and the number of user-side partitions whose
    ranker states to export (0: none)."""
    app = web.Application(middlewares=[errors_as_json])
    app[STORE_KEY] = store
    app[LAG_KEY] = lag_probe
    app[PARTITIONS_KEY] = ranker_partitions
    app.router.add_get("/recommendations/{user_id}", recommendations)
    app.router.add_get("/similar/{item_id}", similar)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)

    async def close_store(app: web.Application) -> None:
        await app[STORE_KEY].close()
        if app[LAG_KEY] is not None:
            app[LAG_KEY].close()

    app.on_cleanup.append(close_store)
    return app


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="bind address (default STREAMREC_WEB_HOST)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})"
    )


def run(args: argparse.Namespace) -> int:
    settings = args.settings
    host = args.host or settings.web_host
    store = RedisReadStore(
        settings.redis_url,
        CacheKeys(settings.redis_key_prefix),
        half_life_s=settings.popularity_half_life_s,
    )
    # The worker group reads the events topic and its own item-deltas topic.
    probe = LagProbe(
        settings.kafka_bootstrap,
        settings.app_id,
        [settings.topic_events, settings.topic_item_deltas],
    )
    log.info("read API on http://%s:%d (redis %s)", host, args.port, settings.redis_url)
    app = make_app(store, probe, ranker_partitions=settings.event_partitions)
    web.run_app(app, host=host, port=args.port, print=None, access_log=None)
    return 0
