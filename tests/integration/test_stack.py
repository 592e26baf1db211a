"""The local stack as `make stack-up` leaves it: idempotent `up`, `status`, and real answers.

The addresses come from the settings (STREAMREC_KAFKA_BOOTSTRAP / STREAMREC_REDIS_URL, which the
Makefile derives from KAFKA_PORT / REDIS_PORT), so the test follows whatever ports the stack uses.
A stack reused from elsewhere (another checkout, Docker) passes too: then there are no PID files
of ours, and the listening processes themselves must be the same before and after `up`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest
import redis
from kafka.admin import KafkaAdminClient

from stream_app.settings import Settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def _ports(settings: Settings) -> tuple[int, int]:
    first = settings.kafka_bootstrap.split(",")[0]
    kafka_host, _, kafka_port = first.rpartition(":")
    redis_url = urlparse(settings.redis_url)
    if kafka_host not in LOCAL_HOSTS or redis_url.hostname not in LOCAL_HOSTS:
        pytest.fail(
            f"this test checks the local stack; the settings point at {first} and "
            f"{settings.redis_url}. Unset STREAMREC_KAFKA_BOOTSTRAP/STREAMREC_REDIS_URL or use "
            "the Makefile's KAFKA_PORT/REDIS_PORT.",
            pytrace=False,
        )
    return int(kafka_port), int(redis_url.port or 6379)


def _stack(command: str, settings: Settings) -> subprocess.CompletedProcess[str]:
    kafka_port, redis_port = _ports(settings)
    env = {
        **os.environ,
        "KAFKA_PORT": str(kafka_port),
        "REDIS_PORT": str(redis_port),
        "STREAMREC_STATE_DIR": str(settings.state_path),
        "PY": sys.executable,
    }
    env.pop("KAFKA_CONTROLLER_PORT", None)
    return subprocess.run(
        ["bash", str(ROOT / "infra/stack.sh"), command],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _listeners(port: int) -> set[int]:
    """PIDs listening on 127.0.0.1:port (from ss; empty if it may not show processes)."""
    out = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=False
    ).stdout
    return {int(part.split("=")[1]) for part in out.replace(",", " ").split() if "pid=" in part}


def _pid_files(settings: Settings) -> dict[str, str]:
    files = {
        "kafka": settings.state_path / "kafka/kafka.pid",
        "redis": settings.state_path / "redis/redis.pid",
    }
    return {name: path.read_text().strip() for name, path in files.items() if path.exists()}


def test_up_again_is_a_no_op(base_settings: Settings) -> None:
    kafka_port, redis_port = _ports(base_settings)
    pids_before = _pid_files(base_settings)
    listeners_before = {kafka_port: _listeners(kafka_port), redis_port: _listeners(redis_port)}

    result = _stack("up", base_settings)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "kafka already up" in result.stdout, result.stdout
    assert "redis already up" in result.stdout, result.stdout
    assert "starting" not in result.stdout
    assert _pid_files(base_settings) == pids_before
    for port, before in listeners_before.items():
        assert _listeners(port) == before, f"the process on port {port} changed"
    for name, pid in pids_before.items():  # ours: still the very process that answers
        assert Path(f"/proc/{pid}").exists(), f"{name} pid {pid} is gone"
        port = kafka_port if name == "kafka" else redis_port
        if listeners_before[port]:
            assert int(pid) in listeners_before[port], f"{name} pid file vs listener on {port}"


def test_status_says_both_are_up(base_settings: Settings) -> None:
    kafka_port, redis_port = _ports(base_settings)
    result = _stack("status", base_settings)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "kafka: up (pid " in result.stdout and f"port {kafka_port}" in result.stdout
    assert "redis: up (pid " in result.stdout and f"port {redis_port}" in result.stdout


def test_kafka_answers_metadata_with_the_advertised_bootstrap(base_settings: Settings) -> None:
    admin = KafkaAdminClient(
        bootstrap_servers=base_settings.kafka_bootstrap.split(","),
        client_id="streamrec-test-stack",
        request_timeout_ms=10_000,
    )
    try:
        cluster = admin.describe_cluster()
        topics = admin.list_topics()
    finally:
        admin.close()
    assert isinstance(topics, list)
    assert cluster["cluster_id"]
    advertised = {f"{b['host']}:{b['port']}" for b in cluster["brokers"]}
    kafka_port, _ = _ports(base_settings)
    # Clients are sent to the advertised address: it must be the one they bootstrapped from.
    assert advertised & {f"127.0.0.1:{kafka_port}", f"localhost:{kafka_port}"}, advertised


def test_redis_answers_ping_and_round_trips(base_settings: Settings) -> None:
    client = redis.Redis.from_url(base_settings.redis_url, socket_connect_timeout=5)
    key = f"streamrec:test:stack:{uuid.uuid4().hex}"
    try:
        assert client.ping() is True
        assert client.set(key, "ok", ex=60)
        assert client.get(key) == b"ok"
    finally:
        client.delete(key)
        client.close()


def test_a_broker_that_cannot_start_fails_at_once_with_the_jvm_error(
    base_settings: Settings, tmp_path: Path
) -> None:
    # A second stack on free ports in its own state dir, with a heap no JVM can start with: `up`
    # must fail with the JVM's own message instead of waiting out READY_TIMEOUT_S. (base_settings:
    # the stack is up, so Kafka's jars are in the cache and nothing is downloaded here.)
    ports = []
    for _ in range(3):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    env = {
        **os.environ,
        "KAFKA_PORT": str(ports[0]),
        "KAFKA_CONTROLLER_PORT": str(ports[1]),
        "REDIS_PORT": str(ports[2]),
        "STREAMREC_STATE_DIR": str(tmp_path / "state"),
        "KAFKA_HEAP_OPTS": "-Xmx1k",
        "PY": sys.executable,
    }
    result = subprocess.run(
        ["bash", str(ROOT / "infra/stack.sh"), "up"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1
    assert "Too small maximum heap" in result.stderr, result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("stack: error: ")
    assert not (tmp_path / "state/kafka/kafka.pid").exists()
    assert not (tmp_path / "state/redis").exists(), "Redis must not start after Kafka failed"
