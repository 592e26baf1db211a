"""infra/stack.sh without starting anything: its generated config and its one-line refusals.

Every case runs the script on free ports with a throw-away state dir and cache, and fails before
a JVM or redis-server would start, so these take well under a second each and need no services.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "infra/stack.sh"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    kafka = free_port()
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "REDIS_"))},
        "KAFKA_PORT": str(kafka),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "REDIS_PORT": str(free_port()),
        "STREAMREC_STATE_DIR": str(tmp_path / "state"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "PY": sys.executable,
        "REUSE_PROBE_S": "1",
    }


def stack(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def fake_java(tmp_path: Path, version: str) -> str:
    """A JAVA_HOME whose java prints ``version`` the way OpenJDK does (on stderr)."""
    home = tmp_path / f"jdk-{version}"
    (home / "bin").mkdir(parents=True)
    java = home / "bin/java"
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2024-01-01' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    return str(home)


def properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#")
    return {key.strip(): value.strip() for key, value in pairs}


def test_config_is_a_single_kraft_node_on_the_chosen_ports(env: dict[str, str]) -> None:
    env["KAFKA_PORT"], env["KAFKA_CONTROLLER_PORT"] = "19092", "19193"
    result = stack("config", env)
    assert result.returncode == 0, result.stderr
    conf = properties(result.stdout)
    assert conf["process.roles"] == "broker,controller"
    assert conf["controller.quorum.voters"] == f"{conf['node.id']}@127.0.0.1:19193"
    assert conf["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19193"
    assert conf["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert conf["group.initial.rebalance.delay.ms"] == "0"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "share.coordinator.state.topic.replication.factor",
    ):
        assert conf[key] == "1", key
    assert conf["log.dirs"] == f"{env['STREAMREC_STATE_DIR']}/kafka/data"


def test_controller_port_defaults_to_kafka_port_plus_one(env: dict[str, str]) -> None:
    env["KAFKA_PORT"] = "29092"
    del env["KAFKA_CONTROLLER_PORT"]
    conf = properties(stack("config", env).stdout)
    assert conf["controller.quorum.voters"].endswith("@127.0.0.1:29093")


@pytest.mark.parametrize("var", ["KAFKA_PORT", "REDIS_PORT", "KAFKA_CONTROLLER_PORT"])
@pytest.mark.parametrize("value", ["70000", "abc", "08080", "0"])
def test_bad_port_variable_is_named(env: dict[str, str], var: str, value: str) -> None:
    env[var] = value
    result = stack("up", env)
    assert result.returncode == 1
    assert result.stderr == f"stack: error: {var}={value} is not a TCP port (1-65535)\n"


def test_missing_java_is_one_clear_message(env: dict[str, str], tmp_path: Path) -> None:
    env["JAVA_HOME"] = str(tmp_path / "no-jdk")
    result = stack("up", env)
    assert result.returncode == 1
    assert "java not found" in result.stderr and "Java 17" in result.stderr
    assert not (tmp_path / "state/kafka/kafka.pid").exists()


@pytest.mark.parametrize("version", ["11.0.22", "1.8.0_392"])
def test_old_java_is_refused(env: dict[str, str], tmp_path: Path, version: str) -> None:
    env["JAVA_HOME"] = fake_java(tmp_path, version)
    result = stack("up", env)
    assert result.returncode == 1
    assert f"java {version} is too old" in result.stderr


def test_missing_maven_is_one_clear_message(env: dict[str, str], tmp_path: Path) -> None:
    # Java 17 passes; the jar cache is empty, so Maven is needed, and it is not there.
    env["JAVA_HOME"] = fake_java(tmp_path, "17.0.9")
    env["MVN"] = str(tmp_path / "no-maven/mvn")
    result = stack("up", env)
    assert result.returncode == 1
    assert "mvn not found" in result.stderr
    assert not list((tmp_path / "cache").rglob(".complete")), "no jars were resolved"


@pytest.fixture
def squatter() -> Iterator[int]:
    """A listener that accepts connections and never speaks Kafka or Redis."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_kafka_port_taken_by_something_else_is_refused(env: dict[str, str], squatter: int) -> None:
    env["KAFKA_PORT"] = str(squatter)
    result = stack("up", env)
    assert result.returncode == 1
    assert f"port {squatter} is taken by" in result.stderr
    assert "not a Kafka broker" in result.stderr


def test_status_of_a_stack_that_is_not_up(env: dict[str, str]) -> None:
    result = stack("status", env)
    assert result.returncode == 3
    assert f"kafka: down (port {env['KAFKA_PORT']})" in result.stdout
    assert f"redis: down (port {env['REDIS_PORT']})" in result.stdout


def test_down_with_nothing_started_stops_nothing(env: dict[str, str]) -> None:
    result = stack("down", env)
    assert result.returncode == 0
    assert "kafka: nothing of ours to stop" in result.stdout
    assert "redis: nothing of ours to stop" in result.stdout


def test_a_stale_pid_file_is_not_trusted(env: dict[str, str], tmp_path: Path) -> None:
    # PID 1 is alive but is not our broker: the command-line check must reject it.
    kdir = tmp_path / "state/kafka"
    kdir.mkdir(parents=True)
    (kdir / "kafka.pid").write_text("1\n")
    result = stack("down", env)
    assert result.returncode == 0
    assert "kafka: nothing of ours to stop" in result.stdout
    assert not (kdir / "kafka.pid").exists()


def test_unknown_command_shows_usage(env: dict[str, str]) -> None:
    result = stack("restart", env)
    assert result.returncode == 2
    assert "usage: bash infra/stack.sh up|down|status" in result.stderr


CLUSTER = ROOT / "infra/kafka_cluster.sh"


def cluster(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(CLUSTER), *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_cluster_nodes_are_three_voters_on_consecutive_ports(env: dict[str, str]) -> None:
    env["KAFKA_CLUSTER_PORT"] = "29192"
    conf = properties(cluster(["config", "2"], env).stdout)
    assert conf["node.id"] == "2"
    assert conf["process.roles"] == "broker,controller"
    voters = "1@127.0.0.1:29195,2@127.0.0.1:29196,3@127.0.0.1:29197"
    assert conf["controller.quorum.voters"] == voters
    assert conf["listeners"] == "PLAINTEXT://127.0.0.1:29193,CONTROLLER://127.0.0.1:29196"
    assert conf["default.replication.factor"] == conf["offsets.topic.replication.factor"] == "3"
    assert conf["min.insync.replicas"] == conf["transaction.state.log.min.isr"] == "2"
    assert conf["log.dirs"] == f"{env['STREAMREC_STATE_DIR']}/kafka-cluster/node-2/data"
    bootstrap = cluster(["bootstrap"], env).stdout.strip()
    assert bootstrap == "127.0.0.1:29192,127.0.0.1:29193,127.0.0.1:29194"


def test_cluster_bad_port_variable_is_named(env: dict[str, str]) -> None:
    env["KAFKA_CLUSTER_PORT"], env["KAFKA_CLUSTER_CONTROLLER_PORT"] = "65534", "29000"
    result = cluster(["up"], env)
    assert result.returncode == 1
    assert "leave no room for 3 nodes" in result.stderr
