"""End-to-end benchmark of the stream worker against the real Kafka and Redis (``make bench``).

It brings nothing up itself (``make stack-up`` does) and touches nothing it did not create: each
run uses its own topics (``bench.<run>.*``), its own consumer groups and app ids, and its own
Redis database (the first one from ``--redis-db`` not locked by another run; emptied), so it can
run next to a demo, the tests or another benchmark.

Per dataset, in one run:

1. **Baseline** (``baseline_events_per_s``): every event is produced to a fresh topic (the
   producer's own config, keyed by user), then a bare kafka-python loop with no model reads it:
   poll up to ``batch_max_events`` records, ``json.loads`` each, one Redis pipeline per batch
   with a ``SET`` (with TTL) per distinct user and one ``INCRBY``, the worker's write shape. The
   clock starts at the first record, so the group join is not counted.
2. **Worker** (``events_per_s``, then ``events_per_s_2_workers``): ``python -m stream_app.cli
   worker`` started as 1 (then 2) subprocesses in one consumer group on a fresh, empty topic,
   with env overrides. When every worker has logged Faust's ``Ready`` and ``--settle-s`` more
   have passed (the group's rebalance), the same events are produced as a backlog; the rate is
   measured from the moment the producer is done to the last event, so start-up, rebalancing
   and the producer's CPU are not counted. Progress is the worker's own ``stats:events`` +
   ``stats:dlq`` counters in Redis.
3. **Freshness** (``freshness_p50_ms``, ``freshness_p99_ms``): a new topic and one new worker;
   once it is ready, events are produced at ``--freshness-fraction`` (0.5) of the 1-worker rate
   with value and Kafka timestamps set at send time. Every 10th event is re-addressed to a new
   "probe" user, so that user's written ``computed_at`` minus the event's timestamp is exactly
   that event's freshness. If the worker also records telemetry
   (``stream_app.worker.telemetry``), its histogram's quantiles and online HitRate@10 are
   reported alongside.
4. **Live vs offline quality** (``live_hit_rate_at_10``, ``offline_hit_rate_at_10_*``, for the
   ``--quality`` datasets, MovieLens by default): the whole stream (its own event timestamps, no
   probe users) is replayed into a new worker paced at ``--freshness-fraction`` of the 1-worker
   rate, as a live source would send it; the worker's own online HitRate@10 counters after the
   first 10% (warm-up) are ``live_hit_rate_at_10`` (the same counters over the 1-worker backlog
   phase are ``backlog_live_*``: there the user side runs ahead of the item side). Offline, in
   the same run and on the same events: prequential HitRate@10 of the online model as
   ``streamrec evaluate`` runs it and of ``stream_app.replica.StreamReplica`` (the worker's CF
   scoring applied one event at a time), which splits the gap into model and streaming parts.

Numbers are from a shared 2-core machine that also runs the broker: read the ratio to the
baseline, measured in the same run, as the more portable figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # results_file, also when imported (the doctests)

from results_file import command_line  # noqa: E402

from models.events import Interaction  # noqa: E402
from stream_app.cache.connect import mget  # noqa: E402
from stream_app.cache.keys import STAT_NAMES, CacheKeys  # noqa: E402
from stream_app.cache.telemetry import (  # noqa: E402
    TelemetryKeys,
    parse_snapshot,
    read_ranker_stats,
)
from stream_app.cli.produce import PRODUCER_CONFIG, encode_message  # noqa: E402
from stream_app.settings import Settings  # noqa: E402

READY_PATTERN = re.compile(r"\bReady\b")


def log(msg: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- small pure helpers


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in [0, 100]); None for no values.

    >>> percentile([5, 1, 3, 2, 4], 50), percentile([1, 2, 3, 4], 99), percentile([], 50)
    (3, 4, None)
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil without floats drifting
    return ordered[int(rank) - 1]


def sustained_rate(samples: Sequence[tuple[float, int]], start_t: float, total: int) -> float:
    """Events/s from ``(time, processed)`` samples between ``start_t`` and reaching ``total``.

    >>> sustained_rate([(0.0, 0), (1.0, 100), (2.0, 300), (3.0, 500)], 1.0, 500)
    200.0
    """
    before = [s for s in samples if s[0] <= start_t]
    t0, c0 = before[-1] if before else samples[0]
    done = next((s for s in samples if s[1] >= total), samples[-1])
    elapsed = done[0] - t0
    return (done[1] - c0) / elapsed if elapsed > 0 else float("nan")


# --------------------------------------------------------------------------- run context


@dataclass
class Run:
    settings: Settings
    run_id: str
    redis_db: int
    tmp: Path
    events: list[Interaction]
    dataset: str
    topics: list[str] = field(default_factory=list)
    timeout_s: float = 600.0
    #: how long the DB's lock lives past each phase's start (``clear`` renews it)
    lock_ttl_s: int = 3600
    #: the compacted items topic every worker of the run follows (``--catalog``: the dataset's
    #: catalog published on it); None: each worker gets an empty one of its own
    items_topic: str | None = None

    @property
    def cluster(self) -> bool:
        """On a Redis Cluster (database 0 only) the run is kept apart by its own key prefix,
        ``settings.redis_key_prefix``, instead of by ``redis_db``."""
        return self.settings.redis.cluster

    @property
    def redis_url(self) -> str:
        if self.cluster:
            return self.settings.redis_url
        base = self.settings.redis_url.rsplit("/", 1)[0]
        return f"{base}/{self.redis_db}"

    def redis_env(self) -> dict[str, str]:
        """The workers' Redis variables: the run's database, or on a cluster its key prefix."""
        env = {"STREAMREC_REDIS_URL": self.redis_url}
        if self.cluster:
            env["STREAMREC_REDIS_KEY_PREFIX"] = self.settings.redis_key_prefix
        return env

    def redis(self) -> Any:
        if self.cluster:  # the product's own cluster client (slot routing, failover)
            from stream_app.cache.connect import connect_redis

            return connect_redis(self.settings.redis)
        import redis

        return redis.Redis.from_url(self.redis_url)

    def clear(self) -> None:
        """Empty this run's Redis DB except the lock that reserves it for this run, and renew
        that lock: a long run (quality phases on both datasets) outlives one TTL. On a cluster:
        delete the run's prefix on every master (no FLUSHDB: others share database 0)."""
        if self.cluster:
            client = self.redis()
            try:
                delete_prefix(client, self.settings.redis_key_prefix)
            finally:
                client.close()
            return
        client = self.redis()
        if client.get(LOCK_KEY) == self.run_id.encode():
            client.expire(LOCK_KEY, self.lock_ttl_s)
        batch: list[bytes] = []
        for key in client.scan_iter(count=5000):
            if key != LOCK_KEY.encode():
                batch.append(key)
            if len(batch) >= 5000:
                client.delete(*batch)
                batch = []
        if batch:
            client.delete(*batch)

    def topic(self, name: str) -> str:
        topic = f"bench.{self.run_id}.{name}"
        self.topics.append(topic)
        return topic


#: Held in the Redis DB a run uses, so two runs at once (two people, two checkouts) take
#: different DBs instead of flushing each other's counters.
LOCK_KEY = "streamrec-bench:lock"


def run_key_patterns(prefix: str) -> tuple[str, str]:
    """``SCAN MATCH`` patterns of every key under ``prefix``: the per-user and per-item keys,
    and the shared ones, hash-tagged on a cluster (``CacheKeys.shared_prefix``). Not
    ``*prefix*``: that would also take a prefix that merely contains this one.

    >>> run_key_patterns("bench-x:v1")
    ('bench-x:v1:*', '{bench-x:v1}:*')
    """
    return f"{prefix}:*", f"{{{prefix}}}:*"


def delete_prefix(client: Any, prefix: str, batch: int = 1000) -> int:
    """Delete every key of ``prefix`` on each master of the cluster ``client`` (SCAN + DEL on
    each node's own connection, one key per DEL: a cluster refuses a DEL across slots, and
    a node only answers for its own keys). Returns how many were deleted."""
    deleted = 0
    for node in client.get_primaries():
        conn = client.get_redis_connection(node)
        for pattern in run_key_patterns(prefix):
            found = list(conn.scan_iter(match=pattern, count=5000))
            for start in range(0, len(found), batch):
                pipe = conn.pipeline(transaction=False)
                for key in found[start : start + batch]:
                    pipe.delete(key)
                deleted += sum(pipe.execute())
    return deleted


def reserve_db(settings: Settings, first: int, run_id: str, ttl_s: int) -> int:
    """The first DB from ``first`` up to 15 whose lock this run could take."""
    import redis

    if settings.redis.cluster:
        raise RuntimeError(
            "a Redis Cluster has database 0 only: a run there is kept apart by its key prefix "
            "(bench/scale.py --redis-cluster), not by a database"
        )
    base = settings.redis_url.rsplit("/", 1)[0]
    for db in range(first, 16):
        client = redis.Redis.from_url(f"{base}/{db}")
        # Only an empty DB: an integration test may have claimed one (tests/integration/conftest).
        if client.dbsize() == 0 and client.set(LOCK_KEY, run_id, nx=True, ex=ttl_s):
            if client.dbsize() == 1:  # nobody wrote in between
                return db
            client.delete(LOCK_KEY)
    raise RuntimeError(f"Redis DBs {first}..15 are all held by other benchmark runs ({LOCK_KEY})")


def release_db(run: Run) -> None:
    """Empty the run's DB and drop its lock; on a cluster, delete the run's key prefix."""
    if run.cluster:
        run.clear()
        return
    client = run.redis()
    if client.get(LOCK_KEY) == run.run_id.encode():
        run.clear()
        client.delete(LOCK_KEY)


def create_topic(settings: Settings, topic: str) -> None:
    from stream_app.kafka.admin import TopicSpec, durability_configs, ensure_topics

    rf, durable = settings.replication_factor, durability_configs(settings)
    spec = TopicSpec(topic, settings.event_partitions, rf, durable)
    ensure_topics(settings, [spec], timeout_s=60)


def delete_topics(settings: Settings, topics: Sequence[str]) -> None:
    """Delete every topic whose name starts with one of ``topics``; a failure is logged (the
    run's numbers stand without the clean-up), not raised."""
    from stream_app.kafka.admin import admin_client

    try:
        with admin_client(settings) as admin:
            existing = set(admin.list_topics())  # type: ignore[attr-defined]
            mine = [t for t in existing if any(t.startswith(p) for p in topics)]
            if mine:
                admin.delete_topics(mine, timeout_ms=30_000)  # type: ignore[attr-defined]
    except Exception as exc:
        log(f"topics starting with {list(topics)} not deleted: {exc!r}")


def retire_topics(args: argparse.Namespace, run: Run) -> None:
    """Delete the topics of the phases run so far (unless ``--keep-topics``).

    Done after each phase rather than at the dataset's end: a finished phase's changelogs
    (hundreds of MB of item rows) otherwise stay on the broker, whose log cleaner keeps
    compacting them while the later, latency-sensitive phases run.
    """
    if run.topics and not args.keep_topics:
        delete_topics(run.settings, run.topics)
        run.topics.clear()


def produce(settings: Settings, topic: str, events: Sequence[Interaction]) -> float:
    """Send every event as fast as the producer goes; return events/s."""
    start = time.perf_counter()
    produce_messages(settings, topic, (encode_message(event) for event in events))
    return len(events) / (time.perf_counter() - start)


def produce_messages(settings: Settings, topic: str, messages: Iterable[tuple[bytes, Any]]) -> None:
    """Send ``(key, value)`` messages (a generator streams them) and wait for every ack; a
    failed send raises."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap.split(","), **PRODUCER_CONFIG
    )
    failures: list[BaseException] = []
    try:
        for key, value in messages:
            producer.send(topic, key=key, value=value).add_errback(failures.append)
        producer.flush()
    finally:
        producer.close()
    if failures:
        raise RuntimeError(f"{len(failures)} sends failed, first: {failures[0]!r}")


# --------------------------------------------------------------------------- the baseline


def baseline(run: Run, topic: str) -> dict[str, float]:
    """A bare kafka-python consume -> json.loads -> Redis pipeline loop over the backlog."""
    from kafka import KafkaConsumer

    total = len(run.events)
    client = run.redis()
    prefix = f"bench:{run.run_id}:baseline"
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=run.settings.kafka_bootstrap.split(","),
        group_id=f"bench-{run.run_id}-baseline",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=run.settings.batch_max_events,
    )
    seen = 0
    first_t: float | None = None
    deadline = time.monotonic() + run.timeout_s
    try:
        while seen < total and time.monotonic() < deadline:
            polled = consumer.poll(timeout_ms=500, max_records=run.settings.batch_max_events)
            records = [r for batch in polled.values() for r in batch]
            if not records:
                continue
            if first_t is None:
                first_t = time.perf_counter()
            latest: dict[str, dict] = {}
            for record in records:
                payload = json.loads(record.value)
                latest[str(payload["user_id"])] = payload
            pipe = client.pipeline(transaction=False)
            now_ms = int(time.time() * 1000)
            for user, payload in latest.items():
                value = json.dumps({"item": payload["item_id"], "computed_at": now_ms})
                pipe.set(f"{prefix}:{user}", value, ex=3600)
            pipe.incrby(f"{prefix}:events", len(records))
            pipe.execute()
            consumer.commit()
            seen += len(records)
        elapsed = time.perf_counter() - (first_t or time.perf_counter())
    finally:
        consumer.close()
    # The clock starts at the first record, so the group join is not counted.
    log(f"baseline: {seen}/{total} events in {elapsed:.2f} s")
    return {
        "baseline_events_per_s": seen / elapsed if elapsed > 0 else float("nan"),
        "baseline_events": seen,
    }


# --------------------------------------------------------------------------- the real worker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class WorkerProc:
    proc: subprocess.Popen
    log_path: Path

    def ready(self) -> bool:
        try:
            return bool(READY_PATTERN.search(self.log_path.read_text(errors="replace")))
        except OSError:
            return False

    def tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def start_worker(
    run: Run, topic: str, app_id: str, index: int, extra_env: dict[str, str] | None = None
) -> WorkerProc:
    env = dict(os.environ)
    env.update(
        {
            "STREAMREC_KAFKA_BOOTSTRAP": run.settings.kafka_bootstrap,
            **run.redis_env(),
            "STREAMREC_TOPIC_EVENTS": topic,
            "STREAMREC_TOPIC_DLQ": f"{topic}.dlq",
            # the run's catalog (``--catalog``), else an empty one of its own: the shared
            # `items` topic may hold a demo's catalog, which switches content scoring on and
            # measures another model
            "STREAMREC_TOPIC_ITEMS": run.items_topic or f"{topic}.items",
            "STREAMREC_APP_ID": app_id,
            "STREAMREC_WEB_PORT": str(free_port()),
            "STREAMREC_STATE_DIR": str(run.tmp / "state"),
            "STREAMREC_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
    )
    run.topics.append(f"{topic}.dlq")
    run.topics.append(app_id)  # Faust's changelog/repartition topics start with the app id
    log_path = run.tmp / f"{app_id}-{index}.log"
    handle = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream_app.cli", "worker"],
        cwd=ROOT,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: a stop reaches Faust's children too
    )
    return WorkerProc(proc, log_path)


def stop_workers(workers: Sequence[WorkerProc], timeout_s: float = 30.0) -> None:
    for w in workers:
        if w.proc.poll() is None:
            os.killpg(w.proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for w in workers:
        try:
            w.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(w.proc.pid, signal.SIGKILL)
            w.proc.wait()


def processed(client: Any, keys: CacheKeys) -> int:
    values = mget(client, [keys.stat("events"), keys.stat("dlq")])
    return sum(int(v) for v in values if v is not None)


def mean_batch(client: Any, keys: CacheKeys) -> float | None:
    """Events per micro-batch over the phase (the worker's own counters): small batches at a
    low rate pay the per-batch Redis round trips on fewer events."""
    events, batches = mget(client, [keys.stat("events"), keys.stat("batches")])
    return int(events) / int(batches) if events and batches and int(batches) else None


def mean_batch_users(client: Any, keys: CacheKeys) -> float | None:
    """Users scored per micro-batch over the phase (one list written per user and batch): the
    per-user work (history row, scoring, one ``SET``) follows this, not the event count."""
    users, batches = mget(client, [keys.stat("recs_written"), keys.stat("batches")])
    return int(users) / int(batches) if users and batches and int(batches) else None


def wait_item_side(settings: Settings, app_id: str, timeout_s: float) -> float | None:
    """Seconds until the item side has committed every delta (its lag is 0), or None.

    Faust commits every ~3 s, so this is late by up to one commit interval."""
    from stream_app.kafka.admin import admin_client, consumer_lag

    start = time.perf_counter()
    with admin_client(settings) as admin:
        while time.perf_counter() - start < timeout_s:
            if consumer_lag(admin, app_id, replace(settings, app_id=app_id).topic_item_deltas) == 0:
                return time.perf_counter() - start
            time.sleep(0.5)
    return None


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (Linux ``/proc``; 0 where unavailable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def machine_busy_s() -> tuple[float, float]:
    """``(busy, total)`` CPU seconds of the whole machine so far (``/proc/stat``)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values) - idle) / tick, sum(values) / tick


def ranker_totals(run: Run, client: Any, keys: CacheKeys) -> tuple[float, int]:
    """``(learn CPU s, updates)`` summed over the rankers' checkpoints in Redis now (every
    user-side partition; a missing or damaged state counts 0)."""
    stats = read_ranker_stats(client, keys, run.settings.event_partitions)
    return sum(r.learn_s for r in stats), sum(r.updates for r in stats)


def ranker_share(
    before: tuple[float, int], after: tuple[float, int], worker_cpu_s: float
) -> dict[str, Any]:
    """The rankers' learning between two :func:`ranker_totals` reads, and its share of the
    workers' CPU over the same window. The rankers time only their own River updates (thread
    CPU), not the features of the pairs they learn from.

    >>> ranker_share((0.5, 100), (2.5, 1100), worker_cpu_s=8.0)
    {'ranker_learn_cpu_s': 2.0, 'ranker_updates': 1000, 'ranker_cpu_share': 0.25}
    >>> ranker_share((0.0, 0), (0.0, 0), worker_cpu_s=0.0)["ranker_cpu_share"] is None
    True
    """
    learn_s = after[0] - before[0]
    return {
        "ranker_learn_cpu_s": learn_s,
        "ranker_updates": after[1] - before[1],
        "ranker_cpu_share": learn_s / worker_cpu_s if worker_cpu_s > 0 else None,
    }


def wait_ready(workers: Sequence[WorkerProc], timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for w in workers:
            if w.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {w.proc.returncode}:\n{w.tail()}")
        if all(w.ready() for w in workers):
            return time.perf_counter()
        time.sleep(0.1)
    raise TimeoutError("workers not ready in time:\n" + "\n".join(w.tail() for w in workers))


def worker_throughput(run: Run, n_workers: int, keys: CacheKeys, settle_s: float) -> dict[str, Any]:
    """``n_workers`` on an empty topic; once they are ready and settled, the whole backlog is
    produced; the rate is measured from the moment the producer is done (a full backlog, no
    producer competing for the CPU, no rebalance in flight) to the last event."""
    client = run.redis()
    run.clear()
    total = len(run.events)
    topic = run.topic(f"w{n_workers}")
    create_topic(run.settings, topic)
    app_id = f"bench-{run.run_id}-w{n_workers}"
    started = time.perf_counter()
    workers = [start_worker(run, topic, app_id, i) for i in range(n_workers)]
    samples: list[tuple[float, int]] = []
    load_before = os.getloadavg()
    cpu0 = cpu1 = cpu2 = 0.0
    busy0 = busy1 = (0.0, 0.0)
    ranker0 = ranker1 = (0.0, 0)
    item_tail_s: float | None = None
    tk = TelemetryKeys(keys)
    warm_n = int(total * QUALITY_WARMUP)
    hit_warm: dict[bytes, bytes] | None = None
    hit_end: dict[bytes, bytes] = {}
    try:
        ready_t = wait_ready(workers, timeout_s=180)
        time.sleep(settle_s)  # the group's join/rebalance after the last worker came up
        produce(run.settings, topic, run.events)
        produced_t = time.perf_counter()
        cpu0 = sum(process_cpu_s(w.proc.pid) for w in workers)
        ranker0 = ranker_totals(run, client, keys)
        busy0 = machine_busy_s()
        deadline = time.monotonic() + run.timeout_s
        while time.monotonic() < deadline:
            now, count = time.perf_counter(), processed(client, keys)
            samples.append((now, count))
            if hit_warm is None and count >= warm_n:
                hit_warm = client.hgetall(tk.hitrate)
            if count >= total:
                hit_end = client.hgetall(tk.hitrate)
                cpu1 = sum(process_cpu_s(w.proc.pid) for w in workers)
                ranker1 = ranker_totals(run, client, keys)
                busy1 = machine_busy_s()
                # The user side is done; the item side may still be working off its deltas.
                item_tail_s = wait_item_side(run.settings, app_id, timeout_s=300)
                cpu2 = sum(process_cpu_s(w.proc.pid) for w in workers)
                break
            if any(w.proc.poll() is not None for w in workers):
                raise RuntimeError("a worker exited:\n" + "\n".join(w.tail() for w in workers))
            time.sleep(0.05)
    finally:
        stop_workers(workers)
    done = samples[-1][1] if samples else 0
    rate = sustained_rate(samples, produced_t, total) if samples else float("nan")
    in_window = done - samples[0][1] if samples else 0
    log(
        f"{n_workers} worker(s): {done}/{total} events, {in_window} in the measured window, "
        f"{rate:.0f} events/s (start-up {ready_t - started:.1f} s, load {load_before[0]:.1f})"
    )
    done_t = next((t for t, c in samples if c >= total), None)
    both_rate = (
        (total - samples[0][1]) / (done_t + item_tail_s - samples[0][0])
        if done_t is not None and item_tail_s is not None and done_t > samples[0][0]
        else None
    )
    return {
        "events_per_s": rate,
        # until the item side has also applied every delta (its consumer lag is 0)
        "events_per_s_with_item_side": both_rate,
        "item_side_tail_s": item_tail_s,
        "worker_cpu_ms_per_event_with_item_side": 1000 * (cpu2 - cpu0) / in_window
        if in_window and cpu2 > 0
        else None,
        "processed": done,
        "events_in_window": in_window,
        "startup_s": ready_t - started,
        "complete": done >= total,
        "mean_batch_events": mean_batch(client, keys),
        "mean_batch_users": mean_batch_users(client, keys),
        # CPU the workers used per event in the measured window (their cost, whatever the
        # contention), and how busy the whole machine was meanwhile.
        "worker_cpu_ms_per_event": 1000 * (cpu1 - cpu0) / in_window
        if in_window and cpu1 > 0
        else None,
        # the rankers' learning over the same window, and its share of that CPU
        **ranker_share(ranker0, ranker1, cpu1 - cpu0 if cpu1 > 0 else 0.0),
        "machine_busy_fraction": (busy1[0] - busy0[0]) / (busy1[1] - busy0[1])
        if busy1[1] > busy0[1]
        else None,
        "loadavg_1m_before": load_before[0],
        "loadavg_1m_after": os.getloadavg()[0],
        **live_hit_rates(hit_warm or {}, hit_end),
    }


#: Share of the stream that only trains (not judged), offline and live: ``streamrec evaluate``'s.
QUALITY_WARMUP = 0.1


def live_hit_rates(warm: dict[bytes, bytes], end: dict[bytes, bytes]) -> dict[str, Any]:
    """The worker's online HitRate@10 and MRR@10 over the events after the warm-up (counter
    differences, the MRR's reciprocal-rank sums over the same trials as the HitRate's).

    ``seq_*``: each sampled event judged against the list as of just before it (comparable with
    offline prequential); ``hits``/``trials``/``rr``: every event against its user's list cached
    before its micro-batch. The warm-up cut is at the first progress sample past
    ``QUALITY_WARMUP`` (a micro-batch's worth of events late at most).

    >>> live_hit_rates({b"hits": b"1", b"trials": b"10", b"rr": b"0.5"},
    ...                {b"hits": b"4", b"trials": b"40", b"rr": b"2.0",
    ...                 b"seq_hits": b"2", b"seq_trials": b"8", b"seq_rr": b"1.5"})
    ... # doctest: +NORMALIZE_WHITESPACE
    {'live_hit_rate_at_10': 0.25, 'live_mrr_at_10': 0.1875, 'live_hit_rate_trials': 8,
     'live_hit_rate_at_10_cached': 0.1, 'live_mrr_at_10_cached': 0.05}
    """

    def delta(field: bytes) -> float:
        return float(end.get(field, 0)) - float(warm.get(field, 0))

    out: dict[str, Any] = {}
    if not end:
        return out
    seq_trials, trials = int(delta(b"seq_trials")), int(delta(b"trials"))
    if seq_trials > 0:
        out["live_hit_rate_at_10"] = delta(b"seq_hits") / seq_trials
        out["live_mrr_at_10"] = delta(b"seq_rr") / seq_trials
        out["live_hit_rate_trials"] = seq_trials
    if trials > 0:
        out["live_hit_rate_at_10_cached"] = delta(b"hits") / trials
        out["live_mrr_at_10_cached"] = delta(b"rr") / trials
    return out


def offline_hit_rates(
    events: Sequence[Interaction],
    catalog: dict,
    seed: int,
    partitions: int,
    dense_reference: bool = False,
    records: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Prequential HitRate@10 and MRR@10 on the same events, in this run, of the worker's own
    model (``StreamModel``, one ranker per user-side partition, as ``streamrec evaluate`` runs
    it; with the catalog ``records`` when the workers had them) and, if asked, the dense offline
    model (slow: it scores the whole catalog per event)."""
    from models.evaluation.prequential import prequential
    from models.online.baselines import OnlineRanker
    from models.online.stream import StreamModel

    models: dict[str, OnlineRanker] = {
        "streamrec": StreamModel(partitions=partitions, catalog=records or ())
    }
    if dense_reference:
        from models.online.recommender import OnlineRecommender

        models["dense_reference"] = OnlineRecommender(catalog=catalog, seed=seed)
    log(f"offline prequential on the same {len(events)} events ({', '.join(models)})")
    result = prequential(events, models, k=10, warmup=QUALITY_WARMUP)
    out: dict[str, Any] = {}
    for name, m in result["models"].items():
        out[f"offline_hit_rate_at_10_{name}"] = m["hit_rate@10"]
        out[f"offline_mrr_at_10_{name}"] = m["mrr@10"]
    return out


def live_vs_offline(result: dict[str, Any]) -> dict[str, Any]:
    """The paced phase's sequential online figures next to the offline ``streamrec`` ones and
    their ratios; every key is written (None where a side has no value), so the two datasets'
    results have one shape.

    >>> live_vs_offline({"paced_live_hit_rate_at_10": 0.2, "offline_hit_rate_at_10_streamrec": 0.25,
    ...                  "offline_mrr_at_10_streamrec": 0.1})  # doctest: +NORMALIZE_WHITESPACE
    {'live_hit_rate_at_10': 0.2, 'live_vs_offline_hit_rate': 0.8, 'live_mrr_at_10': None,
     'live_vs_offline_mrr': None}
    """
    out: dict[str, Any] = {}
    for metric, ratio in (("hit_rate_at_10", "hit_rate"), ("mrr_at_10", "mrr")):
        live = result.get(f"paced_live_{metric}")
        offline = result.get(f"offline_{metric}_streamrec")
        out[f"live_{metric}"] = live
        out[f"live_vs_offline_{ratio}"] = live / offline if live is not None and offline else None
    return out


# --------------------------------------------------------------------------- freshness

#: One event in this many is for a brand-new "probe" user, so its user's ``computed_at`` minus
#: its send time is the freshness of exactly that event (one exact sample per probe).
PROBE_EVERY = 100


def paced_produce(
    settings: Settings,
    topic: str,
    events: Sequence[Interaction],
    rate: float,
    run_id: str,
    probes_every: int = PROBE_EVERY,
) -> dict[str, int]:
    """Send ``events`` at ``rate``/s with timestamps (value and Kafka) = send time, every
    ``probes_every``-th one re-addressed to a new probe user. Returns probe user -> send ms.

    ``probes_every=0``: no probes, and the events keep their own timestamps (Kafka's is still
    the send time), so the stream is the dataset's, paced."""
    from kafka import KafkaProducer

    # linger 5 ms: the send timestamp is taken before the linger, so up to 5 ms of batching is
    # *counted* in the freshness; without it (linger 0) this load generator used 57 % of a core
    # at 2.6k events/s instead of 25 %, CPU the worker lacks on a 2-core box.
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap.split(","), linger_ms=5, acks="all"
    )
    probes: dict[str, int] = {}
    start = time.perf_counter()
    try:
        for i, event in enumerate(events):
            ahead = start + i / rate - time.perf_counter()
            if ahead > 0.0005:
                time.sleep(ahead)
            now_ms = int(time.time() * 1000)
            if probes_every:
                event = replace(event, timestamp_ms=now_ms)
            if probes_every and i % probes_every == 0:
                event = replace(event, user_id=f"probe-{run_id}-{i}")
                probes[event.user_id] = now_ms
            key, value = encode_message(event)
            producer.send(topic, key=key, value=value, timestamp_ms=now_ms)
        producer.flush()
    finally:
        producer.close()
    return probes


def freshness(
    run: Run, rate: float, keys: CacheKeys, duration_s: float, label: str = "fresh"
) -> dict[str, Any]:
    """One paced phase on its own topic and app id (``label``: unique per phase of a run)."""
    client = run.redis()
    run.clear()
    topic = run.topic(label)
    create_topic(run.settings, topic)
    n = max(1, min(len(run.events), int(rate * duration_s)))
    events = run.events[:n]
    worker = start_worker(run, topic, f"bench-{run.run_id}-{label}", 0)
    load_before = os.getloadavg()
    try:
        wait_ready([worker], timeout_s=180)
        time.sleep(3.0)  # let the assignment settle
        log(f"freshness: {n} events at {rate:.0f}/s")
        # CPU accounting over the paced phase: how much of a core the worker got, and how busy
        # the whole machine was (everything else on it included), to tell a slow worker from a
        # starved one.
        cpu0, busy0, wall0 = process_cpu_s(worker.proc.pid), machine_busy_s(), time.perf_counter()
        ranker0 = ranker_totals(run, client, keys)
        probes = paced_produce(run.settings, topic, events, rate, run.run_id)
        deadline = time.monotonic() + 60
        while processed(client, keys) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        count = processed(client, keys)
        wall = time.perf_counter() - wall0
        worker_cpu = process_cpu_s(worker.proc.pid) - cpu0
        ranker1 = ranker_totals(run, client, keys)
        busy1 = machine_busy_s()
    finally:
        stop_workers([worker])
    users = list(probes)
    raw = client.mget([keys.recs(u) for u in users])
    delays = [
        float(int(json.loads(value).get("computed_at", 0)) - probes[user])
        for user, value in zip(users, raw, strict=True)
        if value is not None
    ]
    quarter = max(len(delays) // 4, 1)
    result: dict[str, Any] = {
        "freshness_p50_ms": percentile(delays, 50),
        "freshness_p99_ms": percentile(delays, 99),
        "freshness_max_ms": max(delays) if delays else None,
        "freshness_rate_events_per_s": rate,
        "freshness_events": n,
        "freshness_processed": count,
        "freshness_mean_batch_events": mean_batch(client, keys),
        "freshness_samples": len(delays),
        "freshness_probes_lost": len(users) - len(delays),
        # A steady state has similar first and last quarters; a growing last quarter means the
        # worker fell behind at this rate (a queue built up).
        "freshness_p50_first_quarter_ms": percentile(delays[:quarter], 50),
        "freshness_p50_last_quarter_ms": percentile(delays[-quarter:], 50),
        "freshness_source": "probe users: computed_at - Kafka timestamp (exact, per probe)",
        "freshness_loadavg_1m_before": load_before[0],
        "freshness_phase_wall_s": wall,
        "freshness_worker_cpu_cores": worker_cpu / wall if wall > 0 else None,
        "freshness_worker_cpu_ms_per_event": 1000 * worker_cpu / count if count else None,
        **{f"freshness_{k}": v for k, v in ranker_share(ranker0, ranker1, worker_cpu).items()},
        "freshness_machine_busy_fraction": (busy1[0] - busy0[0]) / (busy1[1] - busy0[1])
        if busy1[1] > busy0[1]
        else None,
    }
    tk = TelemetryKeys(keys)
    freshness_hash = client.hgetall(tk.freshness)
    if freshness_hash:  # the worker records stream_app.worker.telemetry: report its view as well
        snap = parse_snapshot({}, client.hgetall(tk.hitrate), freshness_hash, {})
        result["telemetry_freshness_p50_ms"] = snap.freshness_quantile(0.5)
        result["telemetry_freshness_p99_ms"] = snap.freshness_quantile(0.99)
        result["telemetry_online_hit_rate_at_10"] = snap.hit_rate_at_10
        result["telemetry_online_mrr_at_10"] = snap.mrr_at_10
    log(
        f"freshness: p50 {result['freshness_p50_ms']} ms, p99 {result['freshness_p99_ms']} ms "
        f"from {len(delays)} probes"
    )
    return result


def paced_quality(run: Run, rate: float, keys: CacheKeys, sample: float) -> dict[str, Any]:
    """The whole stream paced at ``rate`` (no probes) into one new worker: its online
    HitRate@10 after the warm-up, as in production (no backlog, so the item side keeps up),
    and its own freshness histogram. ``sample``: the worker's ``HITRATE_SAMPLE`` here (the
    default 2% gives ~1,800 trials on MovieLens, too few for a 10% comparison)."""
    import threading

    client = run.redis()
    run.clear()
    topic = run.topic("quality")
    create_topic(run.settings, topic)
    total = len(run.events)
    worker = start_worker(
        run, topic, f"bench-{run.run_id}-quality", 0, {"STREAMREC_HITRATE_SAMPLE": str(sample)}
    )
    tk = TelemetryKeys(keys)
    warm: dict[bytes, bytes] | None = None
    try:
        wait_ready([worker], timeout_s=180)
        time.sleep(3.0)
        log(f"quality: {total} events paced at {rate:.0f}/s")
        sender = threading.Thread(
            target=paced_produce,
            args=(run.settings, topic, run.events, rate, run.run_id),
            kwargs={"probes_every": 0},
            daemon=True,
        )
        sender.start()
        deadline = time.monotonic() + total / rate + 120
        count = 0
        while time.monotonic() < deadline:
            count = processed(client, keys)
            if warm is None and count >= int(total * QUALITY_WARMUP):
                warm = client.hgetall(tk.hitrate)
            if count >= total:
                break
            if worker.proc.poll() is not None:
                raise RuntimeError("the worker exited:\n" + worker.tail())
            time.sleep(0.05)
        sender.join(timeout=5)
        end = client.hgetall(tk.hitrate)
        snap = parse_snapshot({}, end, client.hgetall(tk.freshness), {})
    finally:
        stop_workers([worker])
    out = {f"paced_{k}": v for k, v in live_hit_rates(warm or {}, end).items()}
    out.update(
        paced_rate_events_per_s=rate,
        paced_processed=count,
        paced_telemetry_freshness_p50_ms=snap.freshness_quantile(0.5),
        paced_telemetry_freshness_p99_ms=snap.freshness_quantile(0.99),
    )
    log(f"quality: {out}")
    return out


# --------------------------------------------------------------------------- driver


def load_events(
    dataset: str, n_events: int | None, seed: int
) -> tuple[list[Interaction], dict[str, Any]]:
    """The stream in evaluation order, and the item catalog (for the offline model)."""
    from models.datasets import load_dataset

    data = load_dataset(dataset, synthetic_events=n_events, seed=seed)
    events = data.sort().events
    return (events[:n_events] if n_events is not None else events), dict(data.items)


def publish_catalog(run: Run, dataset: str) -> list[Any]:
    """The dataset's catalog on a compacted items topic of this run, which every worker of the
    run follows (``Run.items_topic``): the model with content scoring and cold candidates, as a
    shop that publishes its catalog runs it. Returns the records."""
    from models.datasets import load_catalog
    from stream_app.cli.produce import item_messages
    from stream_app.kafka.admin import TopicSpec, ensure_topics

    records = list(load_catalog(dataset))
    # not in ``run.topics``: every phase's workers read it, so it is retired with the run
    topic = f"bench.{run.run_id}.items"
    spec = TopicSpec(topic, 1, run.settings.replication_factor, {"cleanup.policy": "compact"})
    ensure_topics(run.settings, [spec], 60)
    produce_messages(run.settings, topic, item_messages(records))
    run.items_topic = topic
    log(f"{dataset}: {len(records)} catalog records published to {topic}")
    return records


def finish_freshness(
    args: argparse.Namespace, run: Run, keys: CacheKeys, one: dict, result: dict[str, Any]
) -> dict[str, Any]:
    rate = args.freshness_fraction * one["events_per_s"]
    result.update(freshness(run, rate, keys, args.freshness_s))
    retire_topics(args, run)
    curve = []
    for fraction in args.freshness_extra:
        label = f"fresh{round(fraction * 1000)}"
        extra = freshness(run, fraction * one["events_per_s"], keys, args.freshness_s, label)
        retire_topics(args, run)
        curve.append({"fraction": fraction, **extra})
    if curve:
        result["freshness_curve"] = curve
    return result


def bench_dataset(args: argparse.Namespace, settings: Settings, dataset: str) -> dict[str, Any]:
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    n_events = args.events if dataset == "movielens100k" else args.synthetic_events
    events, catalog = load_events(dataset, n_events, args.seed)
    keys = CacheKeys(settings.redis_key_prefix)
    with tempfile.TemporaryDirectory(prefix="streamrec-e2e-") as tmp:
        db = reserve_db(settings, args.redis_db, run_id, ttl_s=int(args.timeout_s * 4))
        run = Run(
            settings,
            run_id,
            db,
            Path(tmp),
            events,
            dataset,
            timeout_s=args.timeout_s,
            lock_ttl_s=int(args.timeout_s * 4),
        )
        log(f"{dataset}: run {run_id} on Redis DB {db}")
        run.clear()
        result: dict[str, Any] = {"dataset": dataset, "events": len(events), "run_id": run_id}
        try:
            if args.assume_events_per_s:
                # Freshness only, at fractions of a rate measured by an earlier run.
                one = {"events_per_s": args.assume_events_per_s, "assumed": True}
                result.update(events_per_s=args.assume_events_per_s, rate_assumed=True)
                return finish_freshness(args, run, keys, one, result)
            records = publish_catalog(run, dataset) if args.catalog else None
            result["catalog_records"] = len(records) if records is not None else 0
            topic = run.topic("events")
            create_topic(settings, topic)
            produce_rate = produce(settings, topic, events)
            log(f"{dataset}: {len(events)} events produced ({produce_rate:.0f}/s) to {topic}")
            result["produce_events_per_s"] = produce_rate
            result.update(baseline(run, topic))
            retire_topics(args, run)
            one = worker_throughput(run, 1, keys, args.settle_s)
            retire_topics(args, run)
            result["events_per_s"] = one["events_per_s"]
            result["worker_1"] = one
            result["workers"] = 1
            if 2 in args.workers:
                two = worker_throughput(run, 2, keys, args.settle_s)
                retire_topics(args, run)
                result["events_per_s_2_workers"] = two["events_per_s"]
                result["worker_2"] = two
                result["scale_out_ratio"] = two["events_per_s"] / one["events_per_s"]
            result["ratio_to_baseline"] = one["events_per_s"] / result["baseline_events_per_s"]
            if dataset in args.quality:
                result.update({f"backlog_{k}": v for k, v in one.items() if k.startswith("live_")})
                pace = args.freshness_fraction * one["events_per_s"]
                result.update(paced_quality(run, pace, keys, args.quality_sample))
                retire_topics(args, run)
                result["paced_hitrate_sample"] = args.quality_sample
                offline = offline_hit_rates(
                    events,
                    catalog,
                    args.seed,
                    settings.event_partitions,
                    args.dense_reference,
                    records,
                )
                result.update(offline)
                result.update(live_vs_offline(result))
            if not args.skip_freshness:
                finish_freshness(args, run, keys, one, result)
        finally:
            run.topics += [run.items_topic] if run.items_topic else []
            retire_topics(args, run)
            with contextlib.suppress(Exception):
                release_db(run)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset",
        action="append",
        choices=["movielens100k", "synthetic"],
        help="repeatable; the first one's numbers are the top-level keys",
    )
    parser.add_argument("--events", type=int, default=None, help="cap MovieLens events")
    parser.add_argument("--synthetic-events", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], choices=[1, 2])
    parser.add_argument(
        "--redis-db",
        type=int,
        default=12,
        help="first Redis DB to try (the run takes the first free one up to 15 and empties it)",
    )
    parser.add_argument("--freshness-fraction", type=float, default=0.5)
    parser.add_argument("--freshness-s", type=float, default=20.0)
    parser.add_argument(
        "--freshness-extra",
        type=float,
        nargs="*",
        default=[],
        help="more fractions of the 1-worker rate to measure freshness at (e.g. 0.25)",
    )
    parser.add_argument("--skip-freshness", action="store_true")
    parser.add_argument(
        "--catalog",
        action="store_true",
        help="publish the dataset's catalog first: workers score content and cold items, and "
        "the offline model of the quality phase has the same catalog",
    )
    parser.add_argument(
        "--quality-sample",
        type=float,
        default=0.1,
        help="STREAMREC_HITRATE_SAMPLE of the quality phase's worker",
    )
    parser.add_argument(
        "--quality",
        nargs="*",
        choices=["movielens100k", "synthetic"],
        default=["movielens100k", "synthetic"],
        help="datasets (of those run) whose live online HitRate@10 and MRR@10 (a paced 1-worker "
        "replay) are compared with offline prequential on the same events in this run; "
        "default both, none with a bare --quality",
    )
    parser.add_argument(
        "--dense-reference",
        action="store_true",
        help="also score the dense offline model (OnlineRecommender) in the quality phase "
        "(slow: it scores every known item per event)",
    )
    parser.add_argument(
        "--assume-events-per-s",
        type=float,
        help="skip the throughput phases; measure freshness at fractions of this rate",
    )
    parser.add_argument(
        "--settle-s", type=float, default=5.0, help="wait after the workers are ready"
    )
    parser.add_argument("--timeout-s", type=float, default=900.0, help="per phase")
    parser.add_argument("--keep-topics", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "e2e.json")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    datasets = args.dataset or ["movielens100k"]
    runs = []
    for dataset in datasets:
        runs.append(bench_dataset(args, settings, dataset))
    out = dict(runs[0])
    out["runs"] = runs
    out["command"] = command_line("bench/e2e.py", argv)
    out["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    out["stat_names"] = list(STAT_NAMES)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, sort_keys=True, default=str) + "\n")
    log(f"wrote {args.out}")
    complete = all(r.get("rate_assumed") or r.get("worker_1", {}).get("complete") for r in runs)
    return 0 if complete else 1


if __name__ == "__main__":
    raise SystemExit(main())
