"""How long a worker takes to rebuild an emptied Redis, against live traffic repopulating it.

One worker on a redis-server of its own processes MovieLens-100K; Redis is emptied (FLUSHALL,
what a restart without persistence leaves) and the time until every partition's users' lists
are rebuilt is measured (the worker checks every ``CACHE_CHECK_S``, 1 s). Baseline: the same
worker restarted with the check off, Redis emptied again, and the first ``--live`` events of
the dataset replayed: how long they take and how much of the cache they bring back.
``python bench/rebuild_cache.py`` -> ``bench/results/rebuild_cache.json``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from pathlib import Path

import redis
from results_file import command_line, write_results

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stream_app.cache import CacheKeys  # noqa: E402
from stream_app.kafka.admin import ensure_topics  # noqa: E402
from stream_app.settings import Settings  # noqa: E402

N_EVENTS = 100_000


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    for f in fields(Settings):
        value = getattr(settings, f.name)
        if value is not None:
            env[f.metadata["env"]] = str(value)
    return {**env, "PYTHONPATH": str(REPO), **extra}


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Seconds until ``condition`` held (polled every 50 ms); raises after ``timeout_s``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


def _counts(client: redis.Redis, prefix: str) -> dict[str, int]:
    def count(kind: str) -> int:
        return sum(1 for _ in client.scan_iter(f"{prefix}:{kind}:*", count=5000))

    return {
        "recs": count("recs"),
        "neighbors": count("neighbors"),
        "successors": count("successors"),
        "trending": int(client.zcard(f"{prefix}:trending")),
    }


def _rebuilt(client: redis.Redis, keys: CacheKeys, partitions: int) -> bool:
    fields_ = client.hgetall(keys.generation)
    token = fields_.get(b"token")
    return token is not None and all(
        fields_.get(f"users:{p}".encode()) == token for p in range(partitions)
    )


def _worker(settings: Settings, log: Path, **extra: str) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "stream_app.cli", "worker"],
            cwd=REPO, env=_env(settings, **extra), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _produce(settings: Settings, limit: int) -> None:
    subprocess.run(
        [sys.executable, "-m", "stream_app.cli", "produce", "--no-progress",
         "--dataset", "movielens100k", "--rate", "0", "--limit", str(limit)],
        cwd=REPO, env=_env(settings), check=True, capture_output=True, timeout=600,
    )  # fmt: skip


def _stage_times(log: Path) -> dict[str, float]:
    """Each stage's own time of the last rebuild, from the worker's log."""
    found = re.findall(r"rebuilt (\w+) of partitions .*: (\d+) keys in ([\d.]+) s", log.read_text())
    return {stage: float(s) for stage, _, s in found[-3:]}


def run(settings: Settings, client: redis.Redis, work: Path, live: int) -> dict:
    keys, prefix, p = CacheKeys(), settings.redis_key_prefix, settings.event_partitions
    stats = keys.stat("events")
    worker = _worker(settings, work / "worker.log")
    try:
        _wait(lambda: _rebuilt(client, keys, p), 120, "the worker's first marker")
        _produce(settings, N_EVENTS)
        _wait(lambda: int(client.get(stats) or 0) >= N_EVENTS, 600, "every event")
        time.sleep(2 * settings.item_batch_delay_s + 1)  # the last item batch
        before = _counts(client, prefix)
        client.flushall()
        rebuild_s = _wait(lambda: _rebuilt(client, keys, p), 300, "the rebuild")
        after = _counts(client, prefix)
        stages = _stage_times(work / "worker.log")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
    baseline = _worker(settings, work / "baseline.log", STREAMREC_CACHE_CHECK_S="0")
    try:
        time.sleep(15)  # tables recovered from their changelogs, partitions assigned
        client.flushall()
        started = time.monotonic()
        _produce(settings, live)
        _wait(lambda: int(client.get(stats) or 0) >= live, 600, "the live events")
        live_s = time.monotonic() - started
        time.sleep(2 * settings.item_batch_delay_s + 1)
        repopulated = _counts(client, prefix)
    finally:
        baseline.send_signal(signal.SIGTERM)
        baseline.wait(60)
    return {
        "before": before,
        "rebuild": {"seconds_until_rebuilt": round(rebuild_s, 2), "stages_s": stages, **after},
        "baseline_live_events": {
            "events": live,
            "seconds_from_the_first_produced_to_the_last_written": round(live_s, 2),
            **repopulated,
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--live", type=int, default=10_000, help="baseline's replayed events")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/rebuild_cache.json")
    args = parser.parse_args(argv)
    binary = shutil.which("redis-server")
    if binary is None:
        print("redis-server not found (make stack-up installs it)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", tmp, "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        run_id = f"bench-rebuild-{uuid.uuid4().hex[:8]}"
        settings = replace(
            Settings.from_env(),
            app_id=run_id, topic_events=f"{run_id}-events", topic_dlq=f"{run_id}-events.dlq",
            topic_items=f"{run_id}-items", topic_model_updates=f"{run_id}-model-updates",
            topic_control=f"{run_id}-control", redis_url=f"redis://127.0.0.1:{port}/0",
            web_port=_free_port(), state_dir=work / "state",
        )  # fmt: skip
        try:
            client = redis.Redis(port=port)
            _wait(lambda: _pings(client), 30, "the private redis-server")
            ensure_topics(settings)
            results = run(settings, client, work, args.live)
        finally:
            server.kill()
            _delete_topics(settings, run_id)
    results = {"command": command_line("bench/rebuild_cache.py", argv), **results}
    write_results(args.out, results, echo=True)
    return 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def _delete_topics(settings: Settings, run_id: str) -> None:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap.split(","))
    try:
        mine = [t for t in admin.list_topics() if t.startswith(run_id)]
        if mine:
            admin.delete_topics(mine)
    finally:
        admin.close()


if __name__ == "__main__":
    raise SystemExit(main())
