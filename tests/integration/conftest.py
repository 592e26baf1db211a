"""Fixtures for tests against the real Kafka and Redis started by ``make stack-up``.

Isolation: every test gets its own topics, Faust app id (consumer group, changelog topics),
web port, state dir and an empty Redis database it claims for itself, so runs do not collide
with each other, with the demo, or with a stack left up from before. Unreachable services make
the tests FAIL with the command to run, never skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import pytest
import redis

from stream_app.cache import CacheKeys
from stream_app.settings import Secret, Settings

REPO = Path(__file__).resolve().parents[2]
CLAIM_KEY = "streamrec:test:claim"
#: First port of the local Redis Cluster (infra/redis_cluster.sh; CI may move it)
REDIS_CLUSTER_PORT = int(os.environ.get("REDIS_CLUSTER_PORT", "7100"))


def _env_of(settings: Settings) -> dict[str, str]:
    """STREAMREC_* variables that reproduce ``settings`` in a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    for f in fields(Settings):
        value = getattr(settings, f.name)
        if isinstance(value, Secret):
            env[f.metadata["env"]] = value.reveal()
        elif value is not None:
            env[f.metadata["env"]] = str(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    """Settings from the environment (the Makefile exports the stack's addresses)."""
    settings = Settings.from_env()
    problems = []
    try:
        redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        problems.append(f"Redis at {settings.redis_url}: {exc}")
    try:
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap.split(","), request_timeout_ms=5000
        )
        admin.list_topics()
        admin.close()
    except Exception as exc:
        problems.append(f"Kafka at {settings.kafka_bootstrap}: {type(exc).__name__}: {exc}")
    if problems:
        pytest.fail(
            "integration tests need the real stack; start it with `make stack-up`.\n  "
            + "\n  ".join(problems),
            pytrace=False,
        )
    return settings


@pytest.fixture
def redis_db(base_settings: Settings) -> Iterator[str]:
    """URL of an empty Redis database claimed for this test (emptied again afterwards)."""
    base = base_settings.redis_url.rsplit("/", 1)[0] if "://" in base_settings.redis_url else ""
    token = uuid.uuid4().hex
    for db in range(15, 0, -1):
        client = redis.Redis.from_url(f"{base}/{db}")
        if client.dbsize() == 0 and client.set(CLAIM_KEY, token, nx=True, ex=900):
            if client.dbsize() == 1:  # nobody else wrote in between
                try:
                    yield f"{base}/{db}"
                finally:
                    if client.get(CLAIM_KEY) == token.encode():
                        client.flushdb()
                    client.close()
                return
            client.delete(CLAIM_KEY)
        client.close()
    pytest.fail("no empty Redis database (1-15) to claim for the test")


def redis_cluster_up() -> str:
    """``infra/redis_cluster.sh up`` (idempotent: it starts what is not running, so a node a
    test killed comes back as a replica) and the cluster's URL."""
    env = {**os.environ, "REDIS_CLUSTER_PORT": str(REDIS_CLUSTER_PORT)}
    script = REPO / "infra" / "redis_cluster.sh"
    done = subprocess.run(
        ["bash", str(script), "up"], env=env, capture_output=True, text=True, timeout=180
    )
    if done.returncode != 0:
        pytest.fail(f"`bash infra/redis_cluster.sh up` failed:\n{done.stdout}{done.stderr}")
    return f"redis+cluster://127.0.0.1:{REDIS_CLUSTER_PORT}"


@pytest.fixture(scope="session")
def redis_cluster() -> str:
    """URL of the local Redis Cluster, started through the project's script if it is not up."""
    return redis_cluster_up()


def delete_cluster_keys(url: str, prefix: str) -> None:
    """Delete every key of ``prefix`` (hash-tagged or not) on each master of the cluster."""
    from stream_app.cache.connect import connect_redis

    client: Any = connect_redis(url)
    for node in client.get_primaries():
        conn = client.get_redis_connection(node)
        for key in list(conn.scan_iter(match=f"*{prefix}*", count=1000)):
            conn.delete(key)  # one key per DEL: a cluster refuses a DEL across slots
    client.close()


@pytest.fixture
def redis_cluster_admin() -> RedisClusterAdmin:
    """The cluster's first port, ``up()`` again (a killed node back) and ``clear(url, prefix)``."""
    return RedisClusterAdmin(REDIS_CLUSTER_PORT, redis_cluster_up, delete_cluster_keys)


@dataclass(frozen=True)
class RedisClusterAdmin:
    port: int
    up: Callable[[], str]
    clear: Callable[[str, str], None]


@pytest.fixture
def cluster_keys(redis_cluster: str) -> Iterator[CacheKeys]:
    """A key prefix of this test's own on the cluster (which has database 0 only); its keys
    are deleted afterwards."""
    keys = CacheKeys(f"it-{uuid.uuid4().hex[:10]}:v1", cluster=True)
    yield keys
    delete_cluster_keys(redis_cluster, keys.prefix)


@pytest.fixture
def settings(base_settings: Settings, redis_db: str, tmp_path: Path) -> Iterator[Settings]:
    """Unique topics, app id, port and Redis DB; the topics are deleted afterwards."""
    run = f"it-{uuid.uuid4().hex[:10]}"
    isolated = replace(
        base_settings,
        app_id=run,
        topic_events=f"{run}-events",
        topic_dlq=f"{run}-events.dlq",
        topic_items=f"{run}-items",
        topic_model_updates=f"{run}-model-updates",
        topic_control=f"{run}-control",
        event_partitions=4,
        redis_url=redis_db,
        web_port=_free_port(),
        state_dir=tmp_path / "state",
        batch_max_delay_s=0.05,
        log_level="INFO",
    )
    yield isolated
    with contextlib.suppress(Exception):
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=isolated.kafka_bootstrap.split(","))
        mine = [t for t in admin.list_topics() if t.startswith(run)]
        if mine:
            admin.delete_topics(mine)
        admin.close()


class WorkerProcess:
    """``python -m stream_app.cli worker`` as a subprocess with its log in a file."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream_app.cli", "worker"],
            cwd=REPO,
            env=_env_of(settings),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stacks(self, settle_s: float = 3.0, lines: int = 400) -> str:
        """The log tail after asking the worker for every thread's and asyncio task's stack.

        mode's worker (under Faust's) answers SIGUSR1 by writing them to its stderr: what a
        stuck worker waits on, for a failure message.
        """
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(settle_s)
        return self.log_tail(lines)

    def assert_alive(self) -> None:
        assert self.proc.poll() is None, (
            f"worker exited with {self.proc.returncode}:\n{self.log_tail()}"
        )

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[[Settings], WorkerProcess]]:
    """Start real workers; every one started is stopped (SIGTERM) when the test ends."""
    started: list[WorkerProcess] = []

    def start(settings: Settings) -> WorkerProcess:
        worker = WorkerProcess(settings, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def _wait_for(
    condition: Callable[[], bool], timeout_s: float, what: str, on_fail: Callable[[], str]
) -> None:
    """Poll ``condition`` until true; fail with ``what`` and diagnostics after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}\n{on_fail()}")


@pytest.fixture
def wait_for() -> Callable[..., None]:
    """``wait_for(condition, timeout_s, what, on_fail)``: poll, then fail with diagnostics."""
    return _wait_for


@pytest.fixture
def env_for() -> Callable[[Settings], dict[str, str]]:
    """``env_for(settings)``: the environment a ``streamrec`` subprocess needs for them."""
    return _env_of


def _dead_letters(settings: Settings) -> list[tuple[bytes, dict]]:
    """Every record of the settings' dead-letter topic, oldest first: (key, decoded value)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        settings.topic_dlq,
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
        group_id=None,
        max_partition_fetch_bytes=4 << 20,  # a fuzzed value's dead letter can be large
    )
    try:
        return [(message.key, json.loads(message.value)) for message in consumer]
    finally:
        consumer.close()


@pytest.fixture
def dead_letters() -> Callable[[Settings], list[tuple[bytes, dict]]]:
    """``dead_letters(settings)``: the DLQ topic's records, read from the start until idle."""
    return _dead_letters


def _produce(env: dict[str, str], *args: str) -> str:
    """``streamrec produce --no-progress ARGS`` as a user runs it; its output. A failed run
    fails the test with the producer's output."""
    out = subprocess.run(
        [sys.executable, "-m", "stream_app.cli", "produce", "--no-progress", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, f"producer failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    assert "produced" in out.stdout, out.stdout
    return out.stdout


@pytest.fixture
def produce() -> Callable[..., str]:
    """``produce(env, *args)``: ``streamrec produce`` in a subprocess (``env_for``'s env)."""
    return _produce


def _producing(env: dict[str, str], *args: str) -> subprocess.Popen:
    """``streamrec produce --no-progress ARGS`` started in the background (a test kills
    something while it runs); ``communicate()`` gives its output."""
    return subprocess.Popen(
        [sys.executable, "-m", "stream_app.cli", "produce", "--no-progress", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture
def producing() -> Callable[..., subprocess.Popen]:
    """``producing(env, *args)``: ``produce``'s command started in the background."""
    return _producing


def _tiny_version(store: Path, hour: int, code: Any = None) -> Path:
    """``models.session.tiny.save_tiny_version``: a small version the worker's gate passes
    (``code``, a Keras layer, between its embedding and its GRU)."""
    from models.session.tiny import save_tiny_version

    return save_tiny_version(store, hour, code)


@pytest.fixture
def tiny_version() -> Callable[..., Path]:
    """``tiny_version(store, hour, code=None)``: a small session-model version saved in
    ``store`` that passes the worker's gate; its path (the directory's name is its version)."""
    return _tiny_version


class PrivateRedis:
    """A ``redis-server`` of the test's own (the binary ``make stack-up`` uses) on a free
    loopback port: a test may SIGKILL and restart it, which the shared Redis must never be."""

    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(
        self,
        data_dir: Path,
        appendonly: bool,
        extra: Sequence[str] = (),
        client: redis.Redis | None = None,
    ) -> None:
        """Start it on this port with ``data_dir`` (its AOF, if ``appendonly``, lives there);
        ``extra`` arguments (ACL users, TLS) and the ``client`` that proves it answers when
        the default one cannot log in."""
        binary = shutil.which("redis-server")
        assert binary, "redis-server not found: `make stack-up` installs it"
        data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(data_dir),
                 "--save", "", "--appendonly", "yes" if appendonly else "no", *extra],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        client = client or redis.Redis(port=self.port, socket_connect_timeout=1)
        _wait_for(lambda: _pings(client), 30, f"redis-server on {self.port}", self.log_tail)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last save."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A ``PrivateRedis`` (not started); killed when the test ends."""
    server = PrivateRedis(_free_port(), tmp_path / "redis.log")
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait(10)


class PrivateStack:
    """A Kafka broker and a Redis of the test's own, started by ``infra/stack.sh`` (the script
    ``make stack-up`` runs) on free loopback ports with a state dir under the test's tmp dir: a
    test may SIGKILL and restart them, which the shared stack must never be."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "REDIS_"))},
            "KAFKA_PORT": str(_free_port()),
            "KAFKA_CONTROLLER_PORT": str(_free_port()),
            "REDIS_PORT": str(_free_port()),
            "STREAMREC_STATE_DIR": str(state),
            "PY": sys.executable,
            "KAFKA_HEAP_OPTS": "-Xms128m -Xmx512m",
        }

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.env['KAFKA_PORT']}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.env['REDIS_PORT']}/0"

    def stack(self, command: str) -> None:
        """``bash infra/stack.sh COMMAND`` for this stack; a failure fails the test with its
        output (``up`` starts only what is down)."""
        out = subprocess.run(
            ["bash", str(REPO / "infra/stack.sh"), command],
            env=self.env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert out.returncode == 0, f"stack.sh {command}:\n{out.stdout}\n{out.stderr}"

    def kill(self, service: str) -> None:
        """SIGKILL ``kafka`` or ``redis``: no shutdown, no flush."""
        pid = int((self.state / service / f"{service}.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        _wait_for(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), 30, "the kill", str)


def _zombie(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    return True


@pytest.fixture
def private_stack(tmp_path: Path) -> Iterator[PrivateStack]:
    """A started ``PrivateStack``; stopped (``stack.sh down``) when the test ends."""
    stack = PrivateStack(tmp_path / "stack")
    stack.stack("up")
    try:
        yield stack
    finally:
        stack.stack("down")
