"""The worker group's scale-out curve on the three-broker cluster (``make bench-scale``).

1, 2 and 4 workers (``--workers``) in one consumer group over 8 partitions
(``--partitions``), each on its own backlog topic replicated 3 ways (min.insync.replicas 2,
acks=all), measured by ``bench/e2e.py``'s own worker phase (``worker_throughput``: the backlog
produced once the group is ready, the rate from the producer's end to the last event, the
workers' CPU over that window). Written to ``bench/results/scale.json`` per worker count:
events/s, CPU per event, the cores the workers used (CPU seconds per wall second) and the whole
machine's busy share, and the projection the CPU per event makes for a machine with a core per
worker. It starts the cluster with ``infra/kafka_cluster.sh up`` (idempotent) and uses the Redis
of ``STREAMREC_REDIS_URL`` (a free database from ``--redis-db``, as e2e.py does).

Small smoke run: ``python bench/scale.py --synthetic-events 50000``.
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import e2e  # noqa: E402
from results_file import command_line, git_commit, machine_load, write_results  # noqa: E402

from stream_app.cache.keys import CacheKeys  # noqa: E402
from stream_app.settings import Settings  # noqa: E402


def cluster_bootstrap() -> str:
    """Start the three-broker cluster if it is down; its bootstrap list."""
    script = ROOT / "infra/kafka_cluster.sh"
    env = {**os.environ, "PY": sys.executable}
    subprocess.run(["bash", str(script), "up"], env=env, check=True, timeout=600)
    out = subprocess.run(
        ["bash", str(script), "bootstrap"], env=env, check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


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


def run_curve(args: argparse.Namespace, settings: Settings) -> list[dict[str, Any]]:
    """Every worker count on its own topic and group, one after the other, in one Redis DB."""
    run_id = f"scale-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    cap = args.synthetic_events if args.dataset == "synthetic" else None
    events, _ = e2e.load_events(args.dataset, cap, args.seed)
    keys = CacheKeys(settings.redis_key_prefix)
    cpus = os.cpu_count() or 1
    points = []
    with tempfile.TemporaryDirectory(prefix="streamrec-scale-") as tmp:
        ttl = int(args.timeout_s * 4)
        db = e2e.reserve_db(settings, args.redis_db, run_id, ttl_s=ttl)
        run = e2e.Run(
            settings, run_id, db, Path(tmp), events, args.dataset,
            timeout_s=args.timeout_s, lock_ttl_s=ttl,
        )  # fmt: skip
        e2e.log(f"scale: run {run_id}, {len(events)} events, Redis DB {db}")
        try:
            for n in args.workers:
                phase = e2e.worker_throughput(run, n, keys, args.settle_s)
                e2e.retire_topics(args, run)
                points.append(point(n, phase, cpus))
        finally:
            e2e.retire_topics(args, run)
            with contextlib.suppress(Exception):
                e2e.release_db(run)
    return points


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=["movielens100k", "synthetic"], default="synthetic")
    parser.add_argument("--synthetic-events", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--replication-factor", type=int, default=3)
    parser.add_argument("--redis-db", type=int, default=12)
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
    settings = Settings.from_env()
    started = machine_load()
    points = run_curve(args, settings)
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
        "machine_at_start": started,
        "machine_at_end": machine_load(),
        "points": points,
    }
    write_results(args.out, out)
    e2e.log(f"wrote {args.out}")
    return 0 if all(p["complete"] for p in points) else 1


if __name__ == "__main__":
    raise SystemExit(main())
