"""Credentials and TLS end to end (issue 20, security posture), on servers of the test's own:
a Redis that wants an ACL user's password, over plain TCP and over TLS (``rediss://``, with
certificates made here by openssl), and a Kafka started by ``infra/stack.sh`` with its SASL_SSL
listener (SCRAM). The worker, the producer, the trainer's event-log reader and the API's lag
reader all log in; a wrong password stops a command at start-up with one line; and no password
shows in a log, a command's output, ``/health``, ``/metrics`` or the dashboard's state."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import redis

from stream_app.cache.connect import connect_redis
from stream_app.cache.keys import CacheKeys
from stream_app.settings import Secret, Settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
REDIS_USER = "streamrec-app"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """(CA, server certificate for 127.0.0.1, its key), made with openssl."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, csr = directory / "server.pem", directory / "server.key", directory / "server.csr"
    ext = directory / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")
    steps = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout", ca_key, "-out", ca],
        ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", key,
         "-out", csr],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "1",
         "-extfile", ext, "-out", cert],
    ]  # fmt: skip
    for step in steps:
        subprocess.run(["openssl", *map(str, step)], check=True, capture_output=True)
    return ca, cert, key


def start_secured_redis(server: Any, tmp_path: Path, password: str, tls: bool) -> Settings:
    """Start ``server`` (a PrivateRedis) with the default user off and one ACL user; with
    ``tls``, on a TLS port only. Returns the Redis part of the settings that reach it."""
    acl = ["--user", "default", "off", "--user", REDIS_USER, "on", f">{password}", "~*", "&*"]
    acl.append("+@all")
    scheme, tls_args, ca = "redis", [], None
    if tls:
        ca, cert, key = make_certificates(tmp_path / "redis-tls")
        scheme = "rediss"
        tls_args = ["--port", "0", "--tls-port", str(server.port), "--tls-cert-file", str(cert),
                    "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
                    "--tls-auth-clients", "no"]  # fmt: skip
    url = f"{scheme}://{REDIS_USER}:{password}@127.0.0.1:{server.port}/0"
    secured = Settings(redis_url=url, redis_tls_ca_file=ca)
    probe = connect_redis(secured.redis, socket_connect_timeout=1)
    server.start(tmp_path / "redis-data", appendonly=False, extra=[*acl, *tls_args], client=probe)
    return secured


class ApiProcess:
    """``streamrec api`` in a subprocess, its output in a file."""

    def __init__(self, env: dict[str, str], port: int, log_path: Path) -> None:
        self.port, self.log_path = port, log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream_app.cli", "api", "--port", str(port)],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:  # /health answers 503 when degraded
            return exc.code, exc.read().decode()

    def wait_up(self, wait_for: Callable[..., None]) -> None:
        def answers() -> bool:
            assert self.proc.poll() is None, self.log_path.read_text()
            try:
                return self.get("/health")[0] in {200, 503}
            except OSError:
                return False

        wait_for(answers, 60, "the API to answer", lambda: self.log_path.read_text())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:  # stuck in a broker call: the test already failed
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


@pytest.fixture
def start_api(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], ApiProcess]]:
    started: list[ApiProcess] = []

    def start(env: dict[str, str]) -> ApiProcess:
        api = ApiProcess(env, _free_port(), tmp_path / f"api-{len(started)}.log")
        started.append(api)
        return api

    yield start
    for api in started:
        api.stop()


def serve_recommendations(
    settings: Settings,
    start_worker: Callable[[Settings], Any],
    start_api: Callable[[dict[str, str]], ApiProcess],
    env_for: Callable[[Settings], dict[str, str]],
    produce: Callable[..., str],
    wait_for: Callable[..., None],
) -> tuple[list[str], dict[str, str]]:
    """Worker, producer and API on ``settings``: events in, a user's list out of the API.
    Returns every log and output, and the API's bodies, for the secrets check."""
    worker = start_worker(settings)
    ready = lambda: "Ready" in worker.log_path.read_text(errors="replace")  # noqa: E731
    wait_for(ready, 150, "the worker to be ready", worker.log_tail)
    produced = produce(env_for(settings), "--generate", "300")
    keys = CacheKeys(settings.redis_key_prefix)
    client = connect_redis(settings.redis)
    users: list[bytes] = []

    def cached() -> bool:
        users[:] = client.keys(keys.recs("*"))
        return bool(users)

    wait_for(cached, 90, "a user's cached recommendations", worker.log_tail)
    worker.assert_alive()
    user = users[0].decode().rsplit(":", 1)[-1]
    api = start_api(env_for(settings))
    api.wait_up(wait_for)
    bodies = {}
    for path in (f"/recommendations/{user}?n=5", "/health", "/metrics", "/dashboard/state"):
        status, bodies[path] = api.get(path)
        assert status in {200, 503}, (path, status, bodies[path])
    assert '"source": "cache"' in bodies[f"/recommendations/{user}?n=5"].replace('":"', '": "')
    assert '"redis": "up"' in bodies["/health"].replace('":"', '": "'), bodies["/health"]
    texts = [produced, worker.log_path.read_text(), api.log_path.read_text()]
    return texts, bodies


def assert_never_shown(secret: str, texts: list[str], bodies: dict[str, str]) -> None:
    for text in texts:
        assert secret not in text
    for path, body in bodies.items():
        assert secret not in body, f"{path} shows the password"


@pytest.mark.parametrize("tls", [False, True], ids=["acl-password", "rediss-tls"])
def test_worker_producer_and_api_log_in_to_a_redis_that_wants_a_password(
    tls: bool,
    settings: Settings,
    private_redis: Any,
    tmp_path: Path,
    start_worker: Callable[[Settings], Any],
    start_api: Callable[[dict[str, str]], ApiProcess],
    env_for: Callable[[Settings], dict[str, str]],
    produce: Callable[..., str],
    wait_for: Callable[..., None],
) -> None:
    password = f"redis-{uuid.uuid4().hex}"
    redis_part = start_secured_redis(private_redis, tmp_path, password, tls)
    secured = replace(
        settings, redis_url=redis_part.redis_url, redis_tls_ca_file=redis_part.redis_tls_ca_file
    )
    # The server really wants the password (and TLS): a client without them is refused.
    anonymous = f"{'rediss' if tls else 'redis'}://127.0.0.1:{private_redis.port}/0"
    with pytest.raises(redis.RedisError):
        connect_redis(replace(secured, redis_url=anonymous).redis).ping()
    texts, bodies = serve_recommendations(
        secured, start_worker, start_api, env_for, produce, wait_for
    )
    assert_never_shown(password, texts, bodies)
    assert "***@127.0.0.1" in texts[1]  # the worker's start-up line names Redis, redacted


@dataclass(frozen=True)
class SaslStack:
    """A private stack (``infra/stack.sh`` with its own state dir and ports) with SASL_SSL."""

    state: Path
    env: dict[str, str]
    sasl_bootstrap: str
    ca: Path
    password: str


@pytest.fixture(scope="module")
def sasl_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SaslStack]:
    """Kafka with a SASL_SSL listener and its own Redis, started and stopped by the stack
    script (the shared stack is never touched: other ports, another state dir)."""
    state = tmp_path_factory.mktemp("sasl-stack")
    ports = {n: _free_port() for n in ("KAFKA_PORT", "KAFKA_CONTROLLER_PORT", "REDIS_PORT")}
    ports["KAFKA_SASL_SSL_PORT"] = _free_port()
    password = f"kafka-{uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMREC_", "KAFKA_"))}
    env |= {name: str(port) for name, port in ports.items()}
    env |= {"STREAMREC_STATE_DIR": str(state), "PY": sys.executable}
    env |= {"KAFKA_HEAP_OPTS": "-Xms128m -Xmx512m"}
    up_env = {**env, "KAFKA_SASL_PASSWORD": password}
    stack = ["bash", str(ROOT / "infra/stack.sh")]
    out = subprocess.run([*stack, "up"], env=up_env, capture_output=True, text=True, timeout=300)
    try:
        assert out.returncode == 0, f"stack.sh up failed:\n{out.stdout}\n{out.stderr}"
        assert password not in out.stdout + out.stderr
        yield SaslStack(
            state,
            env,
            f"127.0.0.1:{ports['KAFKA_SASL_SSL_PORT']}",
            state / "kafka/tls/ca.pem",
            password,
        )
    finally:
        subprocess.run([*stack, "down"], env=env, capture_output=True, timeout=120)


def on_sasl(settings: Settings, stack: SaslStack, password: str) -> Settings:
    return replace(
        settings,
        kafka_bootstrap=stack.sasl_bootstrap,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="streamrec",
        kafka_sasl_password=Secret(password),
        kafka_ssl_cafile=stack.ca,
    )


def test_the_stack_script_configures_a_sasl_ssl_listener(sasl_stack: SaslStack) -> None:
    config = (sasl_stack.state / "kafka/server.properties").read_text()
    assert f"SASL_SSL://{sasl_stack.sasl_bootstrap}" in config
    assert sasl_stack.password not in config
    # A second `up` finds the broker and keeps its listener (idempotent).
    out = subprocess.run(
        ["bash", str(ROOT / "infra/stack.sh"), "up"],
        env={**sasl_stack.env, "KAFKA_SASL_PASSWORD": sasl_stack.password},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0 and "kafka already up" in out.stdout, out.stdout + out.stderr


def test_worker_producer_trainer_and_api_log_in_over_sasl_ssl(
    sasl_stack: SaslStack,
    settings: Settings,
    private_redis: Any,
    tmp_path: Path,
    start_worker: Callable[[Settings], Any],
    start_api: Callable[[dict[str, str]], ApiProcess],
    env_for: Callable[[Settings], dict[str, str]],
    produce: Callable[..., str],
    wait_for: Callable[..., None],
) -> None:
    from stream_app.kafka.event_log import read_topic
    from stream_app.kafka.model_updates import ModelUpdate, publish_update

    redis_password = f"redis-{uuid.uuid4().hex}"
    redis_part = start_secured_redis(private_redis, tmp_path, redis_password, tls=False)
    secured = replace(on_sasl(settings, sasl_stack, sasl_stack.password), **{
        "redis_url": redis_part.redis_url,
    })  # fmt: skip
    texts, bodies = serve_recommendations(
        secured, start_worker, start_api, env_for, produce, wait_for
    )
    # The API's lag reader read the group's lag over SASL_SSL.
    lag_line = f'streamrec_consumer_lag{{group="{secured.app_id}",topic="{secured.topic_events}"}}'
    assert lag_line in bodies["/metrics"], bodies["/metrics"]
    # The trainer's reader gets every event back.
    snapshot = read_topic(secured.kafka, secured.topic_events, timeout_s=30)
    assert len(snapshot.events) == 300
    # ... and its announcer is acknowledged by the broker (acks=all) through the same login.
    update = ModelUpdate("20261207T000000Z-sasl", str(tmp_path / "no-such-version"))
    publish_update(secured.kafka, secured.topic_model_updates, update)
    for secret in (sasl_stack.password, redis_password):
        assert_never_shown(secret, texts, bodies)


@pytest.mark.parametrize(
    "command",
    [["worker"], ["produce", "--no-progress", "--generate", "10"], ["api", "--port", "0"]],
    ids=lambda c: c[0],
)
def test_a_wrong_kafka_password_stops_start_up_with_one_line(
    command: list[str],
    sasl_stack: SaslStack,
    settings: Settings,
    env_for: Callable[[Settings], dict[str, str]],
) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    env = env_for(on_sasl(settings, sasl_stack, wrong))
    out = subprocess.run(
        [sys.executable, "-m", "stream_app.cli", *command],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    # one line naming the refused login, not the client's outage retries ("Unable to bootstrap")
    assert out.returncode == 2, out.stdout + out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("streamrec:")]
    assert errors == [
        f"streamrec: Kafka login refused: {sasl_stack.sasl_bootstrap} refused the SCRAM-SHA-512 "
        "login of user 'streamrec': [Error 58] SaslAuthenticationFailed: Authentication failed "
        "during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512"
    ], out.stderr
    assert "Traceback" not in out.stderr and wrong not in out.stdout + out.stderr


@pytest.mark.parametrize(
    "command",
    [["worker"], ["api", "--port", "0"], ["watch", "--duration", "1"]],
    ids=lambda c: c[0],
)
def test_a_wrong_redis_password_stops_start_up_with_one_line(
    command: list[str],
    private_redis: Any,
    settings: Settings,
    env_for: Callable[[Settings], dict[str, str]],
    tmp_path: Path,
) -> None:
    """redis-py counts a refused login as a connection error, which the worker would retry
    as an outage: the command checks the login first and stops with one line."""
    start_secured_redis(private_redis, tmp_path, f"pw-{uuid.uuid4().hex}", tls=False)
    wrong = f"wrong-{uuid.uuid4().hex}"
    url = f"redis://{REDIS_USER}:{wrong}@127.0.0.1:{private_redis.port}/0"
    env = env_for(replace(settings, redis_url=url))
    out = subprocess.run(
        [sys.executable, "-m", "stream_app.cli", *command],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2, out.stdout + out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("streamrec:")]
    assert len(errors) == 1 and errors[0].startswith("streamrec: Redis login refused: "), errors
    assert "WRONGPASS" in errors[0] or "invalid username-password" in errors[0], errors
    assert "Traceback" not in out.stderr and wrong not in out.stdout + out.stderr
