"""docker-compose.yml cannot be run here (no Docker engine), so it is checked against the code.

What drifts in practice: a renamed STREAMREC_* variable, a removed CLI flag, a bootstrap address
that does not match what Kafka advertises. Each of those is a failing assertion below.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import json
import re
import shlex
import xml.etree.ElementTree as ET
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream_app.cli import COMMANDS
from stream_app.settings import ConfigError, Settings

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
SETTINGS_VARS = {f.metadata["env"] for f in fields(Settings)}
# ${VAR:-default} and ${VAR}: compose interpolates these from the user's shell.
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value: object) -> str:
    """The value compose would use when none of the referenced variables is set."""
    return INTERPOLATION.sub(lambda m: m.group(2) or "", str(value))


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the KEY=VALUE list form
        env = dict(item.split("=", 1) for item in env)
    return {key: interpolate(value) for key, value in env.items()}


def dockerfile_entrypoint() -> list[str]:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    found = [line.split(None, 1)[1] for line in lines if line.startswith("ENTRYPOINT ")]
    assert len(found) == 1, "the Dockerfile should have exactly one ENTRYPOINT"
    return json.loads(found[0])


def our_services() -> dict[str, dict[str, Any]]:
    """Services that run the image built from ./Dockerfile."""
    return {
        name: svc
        for name, svc in SERVICES.items()
        if "build" in svc or str(svc.get("image", "")).startswith("streamrec")
    }


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    assert command, "a StreamRec service must say which subcommand it runs"
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def test_the_roles_the_brief_asks_for_are_there() -> None:
    assert {"kafka", "redis", "topics", "worker", "producer", "trainer"} <= set(SERVICES)
    assert {"topics", "worker", "producer", "trainer"} <= set(our_services())


def test_every_streamrec_variable_is_a_setting_and_parses() -> None:
    seen = 0
    for name, service in SERVICES.items():
        env = env_of(service)
        ours = {k: v for k, v in env.items() if k.startswith("STREAMREC_")}
        unknown = set(ours) - SETTINGS_VARS
        assert not unknown, f"service {name} sets variables Settings does not read: {unknown}"
        try:
            Settings.from_env(ours)
        except ConfigError as exc:  # pragma: no cover - the assertion message is the point
            pytest.fail(f"service {name}: {exc}")
        seen += len(ours)
    assert seen > 0


def test_our_image_runs_streamrec_and_every_command_parses() -> None:
    assert dockerfile_entrypoint() == ["streamrec"]
    for name, service in our_services().items():
        assert "entrypoint" not in service, f"{name} must keep the image's streamrec entrypoint"
        subcommand, *args = command_of(service)
        assert subcommand in COMMANDS, f"{name} runs `streamrec {subcommand}`, not a subcommand"
        # The flags must exist too: parse them with the subcommand's own parser.
        module = importlib.import_module(COMMANDS[subcommand][0])
        parser = argparse.ArgumentParser(prog=f"streamrec {subcommand}", exit_on_error=False)
        module.add_arguments(parser)
        try:
            parser.parse_args(args)
        except (argparse.ArgumentError, SystemExit) as exc:
            pytest.fail(f"service {name}: `streamrec {subcommand} {shlex.join(args)}`: {exc}")


def test_services_and_volumes_referenced_exist() -> None:
    volumes = set(COMPOSE.get("volumes") or {})
    for name, service in SERVICES.items():
        for dep in service.get("depends_on") or {}:
            assert dep in SERVICES, f"{name} depends on unknown service {dep}"
        for mount in service.get("volumes") or []:
            source = mount.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in volumes, f"{name} mounts undeclared volume {source}"


def test_kafka_is_a_kraft_node_advertising_what_the_roles_bootstrap_from() -> None:
    kafka = SERVICES["kafka"]
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", kafka["image"])
    env = env_of(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert node == str(env["KAFKA_NODE_ID"])
    assert f"CONTROLLER://:{voter.rpartition(':')[2]}" in env["KAFKA_LISTENERS"]
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    # The storage format needs a real Kafka UUID: 16 bytes, URL-safe base64 without padding.
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
    ):
        assert env[key] == "1", f"{key} must be 1 on a single broker"

    advertised = {url.split("://", 1)[1] for url in env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    for name, service in our_services().items():
        bootstrap = Settings.from_env(env_of(service)).kafka_bootstrap
        for server in bootstrap.split(","):
            assert server in advertised, (
                f"{name} bootstraps from {server}; Kafka advertises {advertised}"
            )
    # The host-facing listener is what `make stack-up` finds and reuses on 127.0.0.1:9092.
    assert "127.0.0.1:9092" in advertised
    assert any(
        p.startswith("127.0.0.1:") and p.endswith(":29092")
        for p in map(interpolate, kafka["ports"])
    )
    assert "healthcheck" in kafka


def test_roles_wait_for_healthy_kafka_and_redis() -> None:
    assert "healthcheck" in SERVICES["redis"]
    for name in ("worker", "trainer", "producer"):
        deps = SERVICES[name]["depends_on"]
        for infra in ("kafka", "redis"):
            assert deps[infra]["condition"] == "service_healthy", f"{name} -> {infra}"
        assert deps["topics"]["condition"] == "service_completed_successfully", name
    assert SERVICES["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    worker_env = env_of(SERVICES["worker"])
    assert Settings.from_env(worker_env).redis_url.startswith("redis://redis:6379")


def test_worker_and_trainer_share_the_model_store() -> None:
    def store_mount(name: str) -> str:
        target = Settings.from_env(env_of(SERVICES[name])).model_store
        mounts = [m for m in SERVICES[name]["volumes"] if m.split(":")[1] == str(target)]
        assert mounts, f"{name}: no volume at its model store {target}"
        return mounts[0].split(":")[0]

    assert store_mount("worker") == store_mount("trainer")


def test_pom_resolves_kafka_4_in_step_with_stack_script() -> None:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    pom = ET.parse(ROOT / "infra/kafka/pom.xml").getroot()
    props = {el.tag.split("}")[1]: el.text for el in pom.find("m:properties", ns)}
    deps = {
        d.findtext("m:artifactId", namespaces=ns): d.findtext("m:version", namespaces=ns)
        for d in pom.find("m:dependencies", ns)
    }
    assert deps["kafka_2.13"] == "${kafka.version}"
    assert re.fullmatch(r"4\.\d+\.\d+", props["kafka.version"])
    assert "log4j-slf4j-impl" in deps, "without an slf4j binding the broker logs nothing"
    script = (ROOT / "infra/stack.sh").read_text()
    assert f"KAFKA_VERSION={props['kafka.version']}\n" in script
    assert SERVICES["kafka"]["image"] == f"apache/kafka:{props['kafka.version']}"


def test_the_worker_scales_with_compose_scale() -> None:
    """``docker compose up --scale worker=N`` refuses a fixed container name or host port, and
    replicas sharing one state volume would share what should be each one's own."""
    worker = SERVICES["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    target = str(Settings.from_env(env_of(worker)).state_path)
    assert not [m for m in worker.get("volumes", []) if m.split(":")[1] == target]
