"""The worker group's scale-out curve on the three-broker cluster (``make bench-scale``).

1, 2 and 4 workers (``--workers``) in one consumer group over 8 partitions (``--partitions``),
each on its own backlog topic replicated 3 ways (min.insync.replicas 2, acks=all), measured by
``bench/e2e.py``'s worker phase (``worker_throughput``: the backlog produced once the group is
ready, the rate from the producer's end to the last event, the workers' CPU over that window).
Per worker count in ``bench/results/scale.json``: events/s, CPU per event, the cores the workers
used, the machine's busy share, the projection for a core per worker. Kafka is started with
``infra/kafka_cluster.sh up`` (idempotent). Redis: ``STREAMREC_REDIS_URL``'s, in a free
``--redis-db`` as in e2e.py; or ``--redis-cluster``: ``infra/redis_cluster.sh up``, the run under a
key prefix of its own (deleted at the end), the only isolation database 0 allows.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import e2e  # noqa: E402
from results_file import command_line, git_commit, machine_load, write_results  # noqa: E402

from stream_app.cache.keys import CacheKeys  # noqa: E402
from stream_app.settings import Settings  # noqa: E402


def _started(script: str, query: str, timeout_s: float) -> str:
    """Run ``infra/SCRIPT up`` (it starts only what is down), then print what ``query`` says:
    the address the workers are given."""
    path, env = ROOT / "infra" / script, {**os.environ, "PY": sys.executable}
    subprocess.run(["bash", str(path), "up"], env=env, check=True, timeout=timeout_s)
    out = subprocess.run(
        ["bash", str(path), query], env=env, check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def cluster_bootstrap() -> str:
    """Start the three-broker cluster if it is down; its bootstrap list."""
    return _started("kafka_cluster.sh", "bootstrap", 600)


def redis_cluster_url() -> str:
    """Start the local Redis Cluster if it is down (``infra/redis_cluster.sh up`` starts only
    the nodes not running and creates the cluster only once); its ``redis+cluster://`` URL."""
    return _started("redis_cluster.sh", "url", 300)


def run_prefix(run_id: str) -> str:
    """The run's own key prefix on a Redis Cluster, where no database number can keep two
    runs (or a run and a demo on ``streamrec:v1``) apart.

    >>> run_prefix("scale-20260101T000000-abc123")
    'streamrec-bench:scale-20260101T000000-abc123:v1'
    """
    return f"streamrec-bench:{run_id}:v1"


def redis_label(cluster: bool, masters: int = 0, replicas: int = 0) -> str:
    """What scale.json says about the Redis the workers wrote to.

    >>> redis_label(False), redis_label(True, 3, 3)
    ('single', 'cluster (3 masters, 3 replicas)')
    """
    return f"cluster ({masters} masters, {replicas} replicas)" if cluster else "single"


def describe_redis(settings: Settings) -> str:
    """:func:`redis_label` of ``settings``' Redis, the cluster's nodes counted as it sees them."""
    if not settings.redis.cluster:
        return redis_label(False)
    from stream_app.cache.connect import connect_redis

    client: Any = connect_redis(settings.redis)
    try:
        return redis_label(True, len(client.get_primaries()), len(client.get_replicas()))
    finally:
        client.close()


def point(n_workers: int, phase: dict[str, Any], cpus: int) -> dict[str, Any]:
    """One point of the curve from e2e.py's phase result, with the cores the workers kept busy
    (events/s times CPU s per event) and what a core per worker would give at the same CPU per
    event (a projection: it assumes Kafka and Redis are elsewhere and not the limit).

    >>> p = point(2, {"events_per_s": 3000.0, "worker_cpu_ms_per_event": 0.5,
    ...               "machine_busy_fraction": 0.9, "complete": True}, cpus=2)
    >>> p["worker_cores_used"], p["machine_cores_busy"], p["projected_events_per_s"]
    (1.5, 1.8, 4000.0)
    """
    rate, cpu_ms = phase.get("events_per_s"), phase.get("worker_cpu_ms_per_event")
    busy = phase.get("machine_busy_fraction")
    cores_used = rate * cpu_ms / 1000 if rate and cpu_ms else None
    return {
        "workers": n_workers,
        "events_per_s": rate,
        "worker_cpu_ms_per_event": cpu_ms,
        "worker_cores_used": round(cores_used, 3) if cores_used is not None else None,
        "machine_busy_fraction": busy,
        "machine_cores_busy": round(busy * cpus, 3) if busy is not None else None,
        "projected_events_per_s": n_workers * 1000 / cpu_ms if cpu_ms else None,
        "complete": phase.get("complete"),
        "phase": phase,
    }


def release(run: e2e.Run) -> None:
    """The run's Redis data gone: its DB emptied and unlocked (errors ignored, as e2e.py does),
    or on a cluster its prefix deleted, a failure logged: those keys have no TTL to expire."""
    if not run.cluster:
        with contextlib.suppress(Exception):
            e2e.release_db(run)
        return
    try:
        e2e.release_db(run)
        e2e.log(f"scale: deleted the keys of {run.settings.redis_key_prefix} on every master")
    except Exception as exc:
        e2e.log(f"scale: keys of {run.settings.redis_key_prefix} not deleted: {exc!r}")


def run_curve(args: argparse.Namespace, settings: Settings, run_id: str) -> list[dict[str, Any]]:
    """Every worker count on its own topic and group, one after the other, in one Redis DB
    (on a cluster: under the run's key prefix, which ``settings`` carries)."""
    cap = args.synthetic_events if args.dataset == "synthetic" else None
    events, _ = e2e.load_events(args.dataset, cap, args.seed)
    # The workers' own keys: hash-tagged on a cluster, where the counters read here live.
    keys = CacheKeys.for_settings(settings)
    cpus = os.cpu_count() or 1
    points = []
    with tempfile.TemporaryDirectory(prefix="streamrec-scale-") as tmp:
        ttl = int(args.timeout_s * 4)
        cluster = settings.redis.cluster
        db = 0 if cluster else e2e.reserve_db(settings, args.redis_db, run_id, ttl_s=ttl)
        run = e2e.Run(
            settings, run_id, db, Path(tmp), events, args.dataset,
            timeout_s=args.timeout_s, lock_ttl_s=ttl,
        )  # fmt: skip
        where = f"key prefix {settings.redis_key_prefix} on the cluster" if cluster else f"DB {db}"
        e2e.log(f"scale: run {run_id}, {len(events)} events, Redis {where}")
        try:
            for n in args.workers:
                phase = e2e.worker_throughput(run, n, keys, args.settle_s)
                e2e.retire_topics(args, run)
                points.append(point(n, phase, cpus))
        finally:
            e2e.retire_topics(args, run)
            release(run)
    return points


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=["movielens100k", "synthetic"], default="synthetic")
    parser.add_argument("--synthetic-events", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--replication-factor", type=int, default=3)
    parser.add_argument("--redis-db", type=int, default=12)
    parser.add_argument(
        "--redis-cluster",
        action="store_true",
        help="the workers write to the local Redis Cluster (infra/redis_cluster.sh up, started "
        "if down), the run under its own key prefix instead of a --redis-db database",
    )
    parser.add_argument("--settle-s", type=float, default=5.0)
    parser.add_argument("--timeout-s", type=float, default=900.0, help="per worker count")
    parser.add_argument("--keep-topics", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/scale.json")
    args = parser.parse_args(argv)
    # e2e.py's workers inherit this process's environment: the cluster, the partitions and the
    # replication go there, so every worker and every topic of the run agrees on them.
    os.environ["STREAMREC_KAFKA_BOOTSTRAP"] = cluster_bootstrap()
    os.environ["STREAMREC_EVENT_PARTITIONS"] = str(args.partitions)
    os.environ["STREAMREC_REPLICATION_FACTOR"] = str(args.replication_factor)
    if args.redis_cluster:
        os.environ["STREAMREC_REDIS_URL"] = redis_cluster_url()
    settings = Settings.from_env()
    run_id = f"scale-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    if settings.redis.cluster:  # database 0 only: the run's keys apart by their prefix
        settings = replace(settings, redis_key_prefix=run_prefix(run_id))
    redis_used = describe_redis(settings)
    started = machine_load()
    points = run_curve(args, settings, run_id)
    one = next((p for p in points if p["workers"] == 1), None)
    for p in points:
        ratio = p["events_per_s"] / one["events_per_s"] if one and p["events_per_s"] else None
        p["speedup_over_1_worker"] = ratio
    out = {
        "command": command_line("bench/scale.py", argv),
        "commit": git_commit(),
        "dataset": args.dataset,
        "events": args.synthetic_events if args.dataset == "synthetic" else None,
        "partitions": args.partitions,
        "replication_factor": args.replication_factor,
        "kafka_bootstrap": settings.kafka_bootstrap,
        "redis": redis_used,
        "redis_key_prefix": settings.redis_key_prefix,
        "machine_at_start": started,
        "machine_at_end": machine_load(),
        "points": points,
    }
    write_results(args.out, out)
    e2e.log(f"wrote {args.out}")
    return 0 if all(p["complete"] for p in points) else 1


if __name__ == "__main__":
    raise SystemExit(main())
