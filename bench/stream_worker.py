"""Throughput of the stream worker (``streamrec worker``) on a MovieLens-100K backlog.

Why another harness next to ``bench/e2e.py``: on the shared 2-core machine wall-clock rates swing
3x with the neighbours' load, so this one also reports **CPU time**: events per CPU-second of
the worker process (utime + stime from /proc), which moves far less with contention. The
baseline, in the same run, is a bare kafka-python loop that reads the same topic and validates
every event with the same ``decode_event`` (no Faust, no table, no Redis): the floor cost of
"read and parse".

Each repeat starts a fresh worker with a new app id (a new consumer group) on the same topic, so
it consumes the whole backlog from the start; the window runs from its first processed event
(``stats:events`` in Redis) to the last, so start-up and the group join are not counted.

    .venv/bin/python bench/stream_worker.py --repeats 3

writes bench/results/stream_worker_movielens100k.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from results_file import command_line, write_results  # noqa: E402

from models.datasets import load_dataset  # noqa: E402
from models.events import decode_event  # noqa: E402
from stream_app.cache import CacheKeys  # noqa: E402
from stream_app.cli.produce import PRODUCER_CONFIG, encode_message  # noqa: E402
from stream_app.kafka.admin import ensure_topics  # noqa: E402
from stream_app.settings import Settings  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[stream_worker {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process in seconds (fields 14 and 15 of /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    after_comm = stat.rsplit(")", 1)[1].split()
    return (int(after_comm[11]) + int(after_comm[12])) / CLK_TCK


def claim_empty_db(base_url: str) -> tuple[str, redis.Redis]:
    base = base_url.rsplit("/", 1)[0]
    for db in range(15, 0, -1):
        client = redis.Redis.from_url(f"{base}/{db}")
        if client.dbsize() == 0 and client.set("streamrec:bench:claim", "1", nx=True, ex=1800):
            return f"{base}/{db}", client
        client.close()
    raise SystemExit("no empty Redis database to use")


def env_of(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    for f in fields(Settings):
        value = getattr(settings, f.name)
        if value is not None:
            env[f.metadata["env"]] = str(value)
    return env


def produce(settings: Settings, messages: list[tuple[bytes, bytes]]) -> float:
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap.split(","), **PRODUCER_CONFIG
    )
    start = time.perf_counter()
    for key, value in messages:
        producer.send(settings.topic_events, key=key, value=value)
    producer.flush()
    producer.close()
    return len(messages) / (time.perf_counter() - start)


def baseline(settings: Settings, n: int) -> dict[str, float]:
    """Bare kafka-python: read the backlog and validate every event; no Faust, table, Redis."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        settings.topic_events,
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        group_id=f"{settings.app_id}-baseline",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    seen, start_wall, start_cpu = 0, None, 0.0
    while seen < n:
        for records in consumer.poll(timeout_ms=1000, max_records=500).values():
            if start_wall is None:
                start_wall, start_cpu = time.perf_counter(), time.process_time()
            for record in records:
                decode_event(record.value)
            seen += len(records)
    wall = time.perf_counter() - start_wall
    cpu = time.process_time() - start_cpu
    consumer.close()
    return {"events_per_s": n / wall, "events_per_cpu_s": n / cpu}


def worker_run(settings: Settings, n: int, log_path: Path, timeout_s: float) -> dict[str, float]:
    client = redis.Redis.from_url(settings.redis_url)
    client.flushdb()
    keys = CacheKeys(settings.redis_key_prefix)
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream_app.cli", "worker"],
            cwd=ROOT,
            env=env_of(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + timeout_s
        first: tuple[float, float, int] | None = None
        while time.monotonic() < deadline:
            done = int(client.get(keys.stat("events")) or 0)
            if first is None and done > 0:
                first = (time.perf_counter(), proc_cpu_s(proc.pid), done)
            if done >= n:
                break
            if proc.poll() is not None:
                raise SystemExit(f"worker exited ({proc.returncode}); see {log_path}")
            time.sleep(0.05)
        else:
            raise SystemExit(f"worker did not finish in {timeout_s} s; see {log_path}")
        wall, cpu = time.perf_counter() - first[0], proc_cpu_s(proc.pid) - first[1]
        measured = n - first[2]
        return {
            "events_measured": measured,
            "events_per_s": measured / wall,
            "events_per_cpu_s": measured / cpu,
            "batches": int(client.get(keys.stat("batches")) or 0),
        }
    finally:
        proc.terminate()
        proc.wait(60)
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout-s", type=float, default=600.0)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench/results/stream_worker_movielens100k.json"
    )
    args = parser.parse_args(argv)

    run = f"bench-sw-{uuid.uuid4().hex[:8]}"
    redis_url, claim = claim_empty_db(Settings.from_env().redis_url)
    base = replace(
        Settings.from_env(),
        app_id=run,
        topic_events=f"{run}-events",
        topic_dlq=f"{run}-events.dlq",
        topic_items=f"{run}-items",
        topic_model_updates=f"{run}-model-updates",
        redis_url=redis_url,
        state_dir=Path("/tmp") / run,
        log_level="WARNING",
    )
    try:
        ensure_topics(base)
        events = load_dataset("movielens100k").events
        messages = [encode_message(e) for e in events]
        load_before = os.getloadavg()[0]
        produce_rate = produce(base, messages)
        log(f"produced {len(messages)} events ({produce_rate:.0f}/s)")
        base_result = baseline(base, len(messages))
        log(f"baseline: {base_result}")
        runs = []
        for r in range(args.repeats):
            settings = replace(base, app_id=f"{run}-w{r}", web_port=base.web_port + 100 + r)
            result = worker_run(
                settings, len(messages), Path("/tmp") / f"{run}-w{r}.log", args.timeout_s
            )
            result["loadavg_1m"] = os.getloadavg()[0]
            log(f"worker run {r}: {result}")
            runs.append(result)
    finally:
        claim.flushdb()
        claim.close()
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=base.kafka_bootstrap.split(","))
        mine = [t for t in admin.list_topics() if t.startswith(run)]
        if mine:
            admin.delete_topics(mine)
        admin.close()

    median_rate = statistics.median(r["events_per_s"] for r in runs)
    median_cpu = statistics.median(r["events_per_cpu_s"] for r in runs)
    result: dict[str, Any] = {
        "command": command_line("bench/stream_worker.py", argv),
        "dataset": "movielens100k",
        "events": len(messages),
        "settings": {
            "batch_max_events": base.batch_max_events,
            "batch_max_delay_s": base.batch_max_delay_s,
            "event_partitions": base.event_partitions,
            "top_n": base.top_n,
            "history_len": base.history_len,
        },
        "worker_events_per_s_median": median_rate,
        "worker_events_per_cpu_s_median": median_cpu,
        "worker_runs": runs,
        "baseline_bare_consumer": base_result,
        "ratio_to_baseline_wall": median_rate / base_result["events_per_s"],
        "ratio_to_baseline_cpu": median_cpu / base_result["events_per_cpu_s"],
        "produce_events_per_s": produce_rate,
        "loadavg_1m_before": load_before,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }
    write_results(args.out, result)
    log(f"wrote {args.out}: {median_rate:.0f} events/s, {median_cpu:.0f} events per CPU-s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
