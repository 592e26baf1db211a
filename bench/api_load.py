"""The read API under load (issue 20): ``--clients`` concurrent clients on ``/recommendations``.

Fills a Redis DB of its own (the first free one from 12, as ``bench/e2e.py``) the real way:
MovieLens-100K and its catalog through Kafka into one worker, left running idle. Starts
``streamrec api`` on a free loopback port, then one asyncio process runs the clients (one
aiohttp session, connector limit = clients), each looping over known and unknown users with
``n=``, ``exclude=`` and ``category=``: a ``/health`` window first (the baseline: the cheapest
route, same clients), then ``--windows`` back-to-back windows on ``/recommendations``. Records
client-side latency, errors by kind, and the API's RSS and CPU every second. The generator shares
the machine's cores with the API; the file says how busy both were. ``bench/results/api_load.json``.

    python bench/api_load.py [--clients 1000] [--duration 30] [--windows 2]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import e2e  # bench/e2e.py: the run context, the real worker, the producer, /proc readers
from dashboard import start_api, wait_until
from results_file import command_line, git_commit, machine_load, write_results

from stream_app.cache.keys import CacheKeys
from stream_app.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DATASET = "movielens100k"
#: MovieLens genres, the ``category=`` values asked (as the catalog spells them).
GENRES = ("Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller", "Documentary")
#: Request kinds and their share of the ``/recommendations`` load.
KINDS = {"plain": 0.4, "n": 0.2, "exclude": 0.15, "category": 0.15, "exclude+category": 0.1}
UNKNOWN_SHARE = 0.2  # of requests for a user nothing is cached for (the trending fallback)


# --------------------------------------------------------------------------- pure helpers


def quantiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50/p90/p99/max in ms (nearest rank) of latencies in seconds.

    >>> quantiles([0.001, 0.002, 0.003, 0.004])
    {'p50_ms': 2.0, 'p90_ms': 4.0, 'p99_ms': 4.0, 'max_ms': 4.0}
    """
    out: dict[str, float | None] = {}
    for q in (50, 90, 99):
        v = e2e.percentile(values, q)
        out[f"p{q}_ms"] = None if v is None else round(v * 1000, 2)
    out["max_ms"] = round(max(values) * 1000, 2) if values else None
    return out


def slope_per_min(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``(seconds, value)`` points, per minute; None under 3 points.

    >>> slope_per_min([(0.0, 10.0), (30.0, 11.0), (60.0, 12.0)])
    2.0
    """
    if len(points) < 3:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return None
    return round(60 * sum((t - mt) * (v - mv) for t, v in points) / var, 3)


@dataclass
class RequestMix:
    """What a client asks next: a known or unknown user, one of ``KINDS`` of query."""

    users: Sequence[str]
    popular: Sequence[str]

    def next(self, rng: random.Random) -> tuple[str, str]:
        """``(kind, path)``; kind is ``unknown/...`` for a user with nothing cached.

        >>> mix = RequestMix(["1"], ["50"])
        >>> kind, path = mix.next(random.Random(3))
        >>> kind.split("/")[0] in ("known", "unknown") and path.startswith("/recommendations/")
        True
        """
        known = rng.random() >= UNKNOWN_SHARE
        user = rng.choice(self.users) if known else f"ghost-{rng.randrange(10**9)}"
        kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
        params = []
        if kind != "plain":
            params.append(f"n={rng.randint(1, 50)}")
        if "exclude" in kind:
            params.append("exclude=" + ",".join(rng.sample(self.popular, rng.randint(1, 5))))
        if "category" in kind:
            params.append("category=" + ",".join(rng.sample(GENRES, rng.randint(1, 2))))
        query = "?" + "&".join(params) if params else ""
        return f"{'known' if known else 'unknown'}/{kind}", f"/recommendations/{user}{query}"


# --------------------------------------------------------------------------- measurement


@dataclass
class WindowStats:
    """What the clients saw in one window (requests started inside it)."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    warmup_errors: Counter[str] = field(default_factory=Counter)
    warmup_requests: int = 0

    def add(self, kind: str, seconds: float, error: str | None, warm: bool) -> None:
        if warm:
            self.warmup_requests += 1
            if error:
                self.warmup_errors[error] += 1
            return
        if error:
            self.errors[error] += 1
        else:
            self.latencies.setdefault(kind, []).append(seconds)


class ProcSampler(threading.Thread):
    """Every second: the API's RSS and CPU and this DB's Redis connections (a thread, so a busy
    event loop in the load generator does not delay the samples)."""

    def __init__(self, pid: int, redis_client: Any, db: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.redis, self.db = pid, redis_client, db
        self.samples: list[dict[str, float]] = []
        self.stop = threading.Event()

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def redis_conns(self) -> int:
        clients = self.redis.client_list()
        return sum(1 for c in clients if int(c.get("db", -1)) == self.db)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.samples.append(
                    {
                        "t": time.monotonic(),
                        "rss_mb": self.rss_mb(),
                        "cpu_s": e2e.process_cpu_s(self.pid),
                        "redis_conns": self.redis_conns(),
                    }
                )
            except OSError:
                return
            self.stop.wait(1.0)

    def between(self, t0: float, t1: float) -> list[dict[str, float]]:
        return [s for s in self.samples if t0 <= s["t"] <= t1]


def error_kind(exc: BaseException) -> str:
    """An exception of a request, as the results name it."""
    import aiohttp

    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectionError | OSError):
        return f"connection:{type(exc).__name__}"
    return f"other:{type(exc).__name__}"


async def one_client(
    session: Any,
    base: str,
    mix: RequestMix | None,
    path: str,
    seed: int,
    stats: WindowStats,
    measure_from: float,
    stop_at: float,
) -> None:
    """Requests back to back until ``stop_at``: ``mix``'s paths, or ``path`` when no mix."""
    rng = random.Random(seed)
    while (t0 := time.monotonic()) < stop_at:
        kind, url = mix.next(rng) if mix is not None else ("health", path)
        error = None
        try:
            async with session.get(base + url) as resp:
                await resp.read()
                if resp.status != 200:
                    error = f"http:{resp.status}"
        except Exception as exc:  # sorted into kinds; the client keeps going
            error = error_kind(exc)
        stats.add(kind, time.monotonic() - t0, error, warm=t0 < measure_from)


async def run_window(
    session: Any,
    base: str,
    args: argparse.Namespace,
    mix: RequestMix | None,
    path: str,
    seed: int,
) -> tuple[WindowStats, float, float, float]:
    """One window: every client for ``--warmup`` + ``--duration`` s; returns the stats, when
    the window started and when it ended (monotonic), and the generator's own CPU seconds."""
    stats = WindowStats()
    start = time.monotonic()
    measure_from, stop_at = start + args.warmup, start + args.warmup + args.duration
    usage = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.gather(
        *(
            one_client(session, base, mix, path, seed * 100_000 + i, stats, measure_from, stop_at)
            for i in range(args.clients)
        )
    )
    after = resource.getrusage(resource.RUSAGE_SELF)
    gen_cpu = (after.ru_utime + after.ru_stime) - (usage.ru_utime + usage.ru_stime)
    return stats, start, time.monotonic(), gen_cpu


def summarize(
    name: str,
    stats: WindowStats,
    span: tuple[float, float],
    gen_cpu_s: float,
    sampler: ProcSampler,
    busy: tuple[tuple[float, float], tuple[float, float]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One window's figures: requests, errors, throughput and latency over the measured
    ``--duration``; the API's RSS and CPU and the machine's busy share over the whole window."""
    start, end = span
    every = [v for values in stats.latencies.values() for v in values]
    ok = len(every)
    samples = sampler.between(start, end)
    rss = [(s["t"] - start, s["rss_mb"]) for s in samples]
    half = (end - start) / 2
    api_cpu = samples[-1]["cpu_s"] - samples[0]["cpu_s"] if len(samples) > 1 else None
    wall = samples[-1]["t"] - samples[0]["t"] if len(samples) > 1 else None
    (b0, t0), (b1, t1) = busy
    return {
        "window": name,
        "requests": ok + sum(stats.errors.values()),
        "ok": ok,
        "errors": dict(stats.errors),
        "error_rate": round(
            sum(stats.errors.values()) / max(ok + sum(stats.errors.values()), 1), 5
        ),
        "throughput_rps": round((ok + sum(stats.errors.values())) / args.duration, 1),
        "latency": quantiles(every),
        "latency_by_kind": {
            k: {"n": len(v), **quantiles(v)} for k, v in sorted(stats.latencies.items())
        },
        "warmup_requests": stats.warmup_requests,
        "warmup_errors": dict(stats.warmup_errors),
        "api_rss_mb": {
            "start": round(rss[0][1], 1) if rss else None,
            "peak": round(max(v for _, v in rss), 1) if rss else None,
            "end": round(rss[-1][1], 1) if rss else None,
            "slope_last_half_mb_per_min": slope_per_min([p for p in rss if p[0] >= half]),
        },
        "api_cpu_share": round(api_cpu / wall, 3) if api_cpu is not None and wall else None,
        "generator_cpu_share": round(gen_cpu_s / (end - start), 3),
        "machine_busy_share": round((b1 - b0) / (t1 - t0), 3) if t1 > t0 else None,
        "redis_conns_in_db_peak": max((int(s["redis_conns"]) for s in samples), default=None),
    }


async def load(
    base: str, args: argparse.Namespace, mix: RequestMix, sampler: ProcSampler
) -> list[dict[str, Any]]:
    """The ``/health`` baseline, then ``--windows`` windows on ``/recommendations``, back to
    back on one session (its connections stay open from one window to the next)."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=args.clients, limit_per_host=args.clients)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    plan = [("health", None, "/health")] + [
        (f"recommendations_{i + 1}", mix, "") for i in range(args.windows)
    ]
    out = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for seed, (name, window_mix, path) in enumerate(plan, start=1):
            busy0 = e2e.machine_busy_s()
            stats, start, end, gen_cpu = await run_window(
                session, base, args, window_mix, path, seed
            )
            window = summarize(
                name, stats, (start, end), gen_cpu, sampler, (busy0, e2e.machine_busy_s()), args
            )
            e2e.log(f"{name}: {window['throughput_rps']} req/s, {window['latency']}")
            out.append(window)
    return out


# --------------------------------------------------------------------------- the stack


def fill(run: e2e.Run, keys: CacheKeys) -> tuple[dict[str, Any], e2e.WorkerProc, str, str]:
    """The catalog, then the events, through Kafka into one worker, until it has counted every
    event and applied every record; the worker is left running (idle, reporting as in
    production, so ``/health`` stays ``ok``). Returns the figures, the worker, app id, topic."""
    from models.datasets import load_catalog
    from stream_app.cli.produce import item_messages
    from stream_app.kafka.admin import TopicSpec, ensure_topics

    settings, t0 = run.settings, time.monotonic()
    topic, items_topic = run.topic("events"), run.topic("items")
    e2e.create_topic(settings, topic)
    compact = {"cleanup.policy": "compact"}
    ensure_topics(settings, [TopicSpec(items_topic, 1, settings.replication_factor, compact)], 60)
    catalog = load_catalog(DATASET)
    e2e.produce_messages(settings, items_topic, item_messages(catalog))
    e2e.produce(settings, topic, run.events)
    app_id = f"bench-{run.run_id}"
    worker = e2e.start_worker(run, topic, app_id, 0, {"STREAMREC_TOPIC_ITEMS": items_topic})
    client = run.redis()
    wait_until(lambda: e2e.processed(client, keys) >= len(run.events), 600, "every event counted")
    item_keys = [keys.item_meta(r.item_id) for r in catalog]
    wait_until(lambda: client.exists(*item_keys) == len(item_keys), 120, "the catalog applied")
    users = sorted({e.user_id for e in run.events})
    figures = {
        "dataset": DATASET,
        "events": len(run.events),
        "users": len(users),
        "users_with_a_cached_list": client.exists(*[keys.recs(u) for u in users]),
        "catalog_records": len(catalog),
        "fill_s": round(time.monotonic() - t0, 1),
    }
    return figures, worker, app_id, topic


def api_answers(url: str) -> bool:
    """Whether the API answers at all (a 503 ``degraded`` is an answer)."""
    try:
        urllib.request.urlopen(url, timeout=2).close()
    except urllib.error.HTTPError:
        return True
    return True


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=30.0, help="measured s per window")
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured s before each")
    parser.add_argument("--windows", type=int, default=2, help="/recommendations windows (soak)")
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, s")
    parser.add_argument("--events", type=int, default=None, help="MovieLens events (all)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/api_load.json")
    return parser.parse_args(argv)


def measure(run: e2e.Run, args: argparse.Namespace, keys: CacheKeys) -> dict[str, Any]:
    """Fill, start the API, load it; everything this run started is stopped, its DB emptied and
    released and its topics deleted, whatever happens."""
    worker = api = sampler = None
    try:
        filled, worker, app_id, topic = fill(run, keys)
        client = run.redis()
        users = [u for u in sorted({e.user_id for e in run.events}) if client.exists(keys.recs(u))]
        popular = [m.decode() for m in client.zrevrange(keys.trending, 0, 49)]
        port = e2e.free_port()
        api = start_api(run, app_id, topic, port)
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: api_answers(base + "/health"), 60, "the API")
        sampler = ProcSampler(api.pid, run.redis(), run.redis_db)
        sampler.start()
        time.sleep(3)  # the idle API's RSS before any load
        idle_before = sampler.samples[-1]["rss_mb"]
        windows = asyncio.run(load(base, args, RequestMix(users, popular), sampler))
        time.sleep(5)  # and once the load has stopped
        idle_after = sampler.samples[-1]["rss_mb"]
        log_text = (run.tmp / "api.log").read_text(errors="replace")
    finally:
        if sampler is not None:
            sampler.stop.set()
        if api is not None:
            api.terminate()
            api.wait(15)
        if worker is not None:
            e2e.stop_workers([worker])
        e2e.release_db(run)
        e2e.delete_topics(run.settings, run.topics)
    recs = [w for w in windows if w["window"] != "health"]
    return {
        "data": filled,
        "windows": windows,
        "api_rss_mb_idle_before": round(idle_before, 1),
        "api_rss_mb_idle_after": round(idle_after, 1),
        "api_rss_mb_end_of_each_recommendations_window": [w["api_rss_mb"]["end"] for w in recs],
        "api_log_unhandled_errors": log_text.count("unhandled error"),
        "api_log_tail": log_text.splitlines()[-5:],
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings.from_env()
    run_id = f"load{uuid.uuid4().hex[:8]}"
    events, _ = e2e.load_events(DATASET, args.events, seed=7)
    run = e2e.Run(settings, run_id, 0, Path(tempfile.mkdtemp()), events, DATASET)
    run.redis_db = e2e.reserve_db(settings, 12, run_id, run.lock_ttl_s)
    before = machine_load()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    measured = measure(run, args, CacheKeys(settings.redis_key_prefix))
    results = {
        "command": command_line("bench/api_load.py", argv),
        "commit": git_commit(),
        "started": started,
        "clients": args.clients,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "request_timeout_s": args.timeout,
        "mix": {"unknown_user_share": UNKNOWN_SHARE, "kinds": KINDS, "categories": GENRES},
        **measured,
        "machine_before": before,
        "machine_after": machine_load(),
        "open_files_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "note": "the load generator (one asyncio process), the API (one process), an idle "
        "worker, Kafka and Redis share this machine's cores: see generator_cpu_share, "
        "api_cpu_share and machine_busy_share per window",
    }
    write_results(args.out, results, echo=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
