"""The private stack and the processes ``bench/chaos.py`` breaks: a Kafka broker and a Redis of
its own (``infra/stack.sh`` with other ports and another state dir, so the shared stack is never
touched), real ``streamrec worker`` processes watched for exits nobody caused, and the readings
every scenario reports (counters, dead letters, lag, rankers, RSS)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stream_app.cache import CacheKeys  # noqa: E402
from stream_app.settings import Settings  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Seconds until ``condition`` held (polled every 0.1 s); raises after ``timeout_s``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - started


@dataclass
class PrivateStack:
    """Kafka and Redis from ``infra/stack.sh`` on free loopback ports under ``state``. Killed by
    the PIDs in its own state dir, restarted by ``up`` (idempotent: only what is down starts)."""

    state: Path
    kafka_port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    redis_port: int = field(default_factory=free_port)

    def _env(self, appendonly: bool) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "REDIS_"))}
        return {
            **keep,
            "KAFKA_PORT": str(self.kafka_port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "REDIS_PORT": str(self.redis_port),
            "STREAMREC_STATE_DIR": str(self.state),
            "PY": sys.executable,
            # A second broker on a shared 2-core machine: a smaller heap than the shared one's.
            "KAFKA_HEAP_OPTS": "-Xms128m -Xmx512m",
            "REDIS_APPENDONLY": "yes" if appendonly else "no",
        }

    def up(self, appendonly: bool = True) -> float:
        """Start whatever is down; seconds it took. ``appendonly``: a Redis started now keeps
        an append-only file (a restart without it comes back empty)."""
        started = time.monotonic()
        subprocess.run(
            ["bash", str(REPO / "infra/stack.sh"), "up"],
            env=self._env(appendonly), check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        return time.monotonic() - started

    def down(self) -> None:
        subprocess.run(
            ["bash", str(REPO / "infra/stack.sh"), "down"],
            env=self._env(False), check=False, capture_output=True, timeout=300,
        )  # fmt: skip

    def kill(self, service: str) -> None:
        """SIGKILL ``kafka`` or ``redis`` by the PID file this state dir holds."""
        pid = int((self.state / service / f"{service}.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not _alive(pid), 30, f"{service} (pid {pid}) to die")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def redis_url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/{db}"


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def scenario_settings(stack: PrivateStack, name: str, db: int, work: Path) -> Settings:
    """Settings of one scenario: its own topics, app id, Redis database and state dir."""
    run = f"chaos-{name}"
    return replace(
        Settings.from_env(),
        kafka_bootstrap=stack.bootstrap, redis_url=stack.redis_url(db), app_id=run,
        topic_events=f"{run}-events", topic_dlq=f"{run}-events.dlq", topic_items=f"{run}-items",
        topic_model_updates=f"{run}-model-updates", topic_control=f"{run}-control",
        web_port=free_port(), state_dir=work / run / "state", event_partitions=4,
    )  # fmt: skip


def env_of(settings: Settings) -> dict[str, str]:
    """STREAMREC_* variables that reproduce ``settings`` in a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    for f in fields(Settings):
        value = getattr(settings, f.name)
        if value is not None:
            env[f.metadata["env"]] = str(value)
    return {**env, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


class Worker:
    """One ``streamrec worker`` at a time for a scenario. A worker that exits without being
    killed here is a crash: counted, and replaced so the scenario can still be measured."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.starts = 0
        self.kills = 0
        self.crashes = 0
        self.proc = self._start()

    def _start(self) -> subprocess.Popen:
        self.starts += 1
        with (self.log_dir / f"worker-{self.starts}.log").open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "stream_app.cli", "worker"],
                cwd=REPO, env=env_of(self.settings), stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def check(self) -> bool:
        """True; replaces the worker (a crash) if it exited by itself. For ``wait_until``."""
        if self.proc.poll() is not None:
            self.crashes += 1
            print(f"chaos: worker exited by itself ({self.proc.returncode}); restarting")
            self.proc = self._start()
        return True

    def sigkill_and_restart(self) -> None:
        self.check()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.kills += 1
        self.proc = self._start()

    def stop(self) -> int:
        """SIGTERM; its exit status (a worker that must be SIGKILLed at the end: -9)."""
        self.check()
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(30)

    def agent_crashes(self) -> int:
        """Faust services that crashed inside a live process (mode logs 'Crashed reason=')."""
        return sum(
            p.read_text(errors="replace").count("Crashed reason=")
            for p in self.log_dir.glob("worker-*.log")
        )

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
        raise RuntimeError("no VmRSS")


def produce(settings: Settings, *args: str) -> subprocess.Popen:
    """``streamrec produce --no-progress ARGS`` in the background, as a user runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "stream_app.cli", "produce", "--no-progress", *args],
        cwd=REPO, env=env_of(settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip


def finish(producer: subprocess.Popen, timeout_s: float = 900) -> None:
    out, _ = producer.communicate(timeout=timeout_s)
    if producer.returncode != 0 or "produced" not in out:
        raise RuntimeError(f"producer failed ({producer.returncode}):\n{out[-3000:]}")


def counter(settings: Settings, name: str) -> int:
    """``stats:<name>`` of the scenario's Redis; -1 while Redis does not answer."""
    try:
        client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1)
        return int(client.get(CacheKeys(settings.redis_key_prefix).stat(name)) or 0)
    except redis.RedisError:
        return -1


def rebuilt(settings: Settings, old_token: bytes | None = None) -> bool:
    """Every partition's users marked rebuilt under a generation token other than ``old``."""
    keys = CacheKeys(settings.redis_key_prefix)
    try:
        marks = redis.Redis.from_url(settings.redis_url).hgetall(keys.generation)
    except redis.RedisError:
        return False
    token = marks.get(b"token")
    return token not in (None, old_token) and all(
        marks.get(f"users:{p}".encode()) == token for p in range(settings.event_partitions)
    )


def lag(settings: Settings) -> int | None:
    """The group's lag on the events topic (committed offsets; Faust commits every 2.8 s)."""
    from kafka.admin import KafkaAdminClient

    from stream_app.kafka.admin import consumer_lag

    try:
        admin = KafkaAdminClient(bootstrap_servers=[settings.kafka_bootstrap])
    except Exception:
        return None
    try:
        return consumer_lag(admin, settings.app_id, settings.topic_events)
    finally:
        admin.close()


def topic_records(settings: Settings, topic: str) -> tuple[dict[int, int], list[tuple]]:
    """(end offset per partition, [(key, value)] of every record) of ``topic``."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=[settings.kafka_bootstrap], group_id=None,
        auto_offset_reset="earliest", consumer_timeout_ms=5000,
        max_partition_fetch_bytes=4 << 20,  # a fuzzed value's dead letter can be large
    )  # fmt: skip
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        ends = {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
        consumer.assign(tps)
        consumer.seek_to_beginning()
        return ends, [(m.key, m.value) for m in consumer]
    finally:
        consumer.close()


def exactly_once(settings: Settings, good: int, invalid: int) -> dict[str, Any]:
    """Lost, duplicated and dead-lettered counts of a scenario, two ways: the counter against
    the good events produced, and each partition's ranker (which learns every counted event
    once) against that partition's messages less its dead letters, so that a loss in one
    partition cannot hide behind a double count in another."""
    from models.online.stream import StreamRanker

    ends, _ = topic_records(settings, settings.topic_events)
    _, letters = topic_records(settings, settings.topic_dlq)
    keys = [k.decode() for k, _ in letters]
    unique = set(keys)
    dead_per_partition = Counter(int(k.split("/")[1]) for k in unique)
    reasons = sum(bool(json.loads(v).get("reason")) for _, v in letters)
    client = redis.Redis.from_url(settings.redis_url)
    cache = CacheKeys(settings.redis_key_prefix)
    parts = sorted(ends)
    raw = client.mget([cache.ranker(p) for p in parts])
    learned = {
        p: StreamRanker.from_json(r).n_events if r else 0 for p, r in zip(parts, raw, strict=True)
    }
    expected = {p: ends[p] - dead_per_partition[p] for p in ends}
    counted = counter(settings, "events")
    lost = sum(max(expected[p] - learned[p], 0) for p in ends)
    doubled = sum(max(learned[p] - expected[p], 0) for p in ends)
    return {
        "produced": sum(ends.values()),
        "events_good": good,
        "messages_invalid": invalid,
        "counted": counted,
        "lost_events": max(good - counted, lost, 0),
        "duplicated_events": max(counted - good, doubled, 0),
        "learned_per_partition": learned,
        "expected_per_partition": expected,
        "rankers_missing": [p for p, r in zip(parts, raw, strict=True) if r is None],
        "dead_letters": len(keys),
        "dead_letters_unique": len(unique),
        "dead_letters_with_reason": reasons,
        "duplicate_dead_letters": len(keys) - len(unique),
        "dead_letter_counter": counter(settings, "dlq"),
    }
