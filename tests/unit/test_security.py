"""Credentials and TLS: the settings that must go together, secrets that never print, the
client options built for each library, and no Kafka or Redis client opened around them."""

from __future__ import annotations

import ast
import ssl
import subprocess
from pathlib import Path

import pytest

from stream_app.cache.connect import connect_redis, redis_options
from stream_app.kafka.clients import (
    aiokafka_options,
    faust_credentials,
    kafka_python_options,
    ssl_context,
)
from stream_app.settings import ConfigError, RedisAccess, Secret, Settings
from stream_app.worker.app import faust_settings

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "pa55-Word-never-shown"


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed certificate: something ``ssl`` can load as a CA."""
    tmp = tmp_path_factory.mktemp("ca")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=test-ca", "-keyout", str(tmp / "ca.key"), "-out", str(tmp / "ca.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    return tmp / "ca.pem"


def sasl_env(**extra: str) -> dict[str, str]:
    return {
        "STREAMREC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "STREAMREC_KAFKA_SASL_USERNAME": "app",
        "STREAMREC_KAFKA_SASL_PASSWORD": PASSWORD,
        **extra,
    }


def test_sasl_settings_reach_every_kafka_library(ca_file: Path) -> None:
    s = Settings.from_env(sasl_env(STREAMREC_KAFKA_SSL_CAFILE=str(ca_file)))
    options = kafka_python_options(s.kafka)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("app", PASSWORD)
    context = options["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert aiokafka_options(s.kafka)["sasl_plain_password"] == PASSWORD
    credentials = faust_settings(s)["broker_credentials"]
    assert (credentials.username, credentials.password) == ("app", PASSWORD)
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-256"
    assert PASSWORD not in repr(credentials)


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    assert kafka_python_options(Settings().kafka) == {
        "bootstrap_servers": ["127.0.0.1:9092"],
        "security_protocol": "PLAINTEXT",
    }
    assert faust_settings(Settings())["broker_credentials"] is None
    assert redis_options(Settings().redis) == {}


def test_ssl_without_sasl_gives_faust_ssl_credentials(ca_file: Path) -> None:
    s = Settings.from_env(
        {"STREAMREC_KAFKA_SECURITY_PROTOCOL": "ssl", "STREAMREC_KAFKA_SSL_CAFILE": str(ca_file)}
    )
    assert "sasl_mechanism" not in kafka_python_options(s.kafka)
    assert isinstance(ssl_context(s.kafka), ssl.SSLContext)
    assert faust_credentials(s.kafka).protocol.value == "SSL"


def test_the_password_file_is_read_when_a_client_is_made(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("first\n")
    env = sasl_env(STREAMREC_KAFKA_SASL_PASSWORD="")
    env["STREAMREC_KAFKA_SASL_PASSWORD_FILE"] = str(secret)
    s = Settings.from_env(env)
    assert kafka_python_options(s.kafka)["sasl_plain_password"] == "first"
    secret.write_text("rotated")
    assert kafka_python_options(s.kafka)["sasl_plain_password"] == "rotated"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STREAMREC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs STREAMREC_KAFKA_SASL_USERNAME"),
        (
            {"STREAMREC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "STREAMREC_KAFKA_SASL_USERNAME": "a"},
            "needs STREAMREC_KAFKA_SASL_PASSWORD or STREAMREC_KAFKA_SASL_PASSWORD_FILE",
        ),
        ({"STREAMREC_KAFKA_SASL_PASSWORD": "x"}, "STREAMREC_KAFKA_SASL_PASSWORD is set but"),
        ({"STREAMREC_KAFKA_SSL_CAFILE": "CA"}, "STREAMREC_KAFKA_SSL_CAFILE is set but"),
        ({"STREAMREC_REDIS_TLS_CA_FILE": "CA"}, "is not a rediss:// (TLS) URL"),
        (sasl_env(STREAMREC_KAFKA_SASL_PASSWORD_FILE="CA"), "not both"),
    ],
)
def test_settings_that_only_work_together_stop_start_up(
    env: dict[str, str], message: str, ca_file: Path
) -> None:
    env = {k: str(ca_file) if v == "CA" else v for k, v in env.items()}
    with pytest.raises(ConfigError) as exc:
        Settings.from_env(env)
    assert message in str(exc.value)
    assert PASSWORD not in str(exc.value)


def test_secrets_never_print() -> None:
    s = Settings.from_env(sasl_env(STREAMREC_REDIS_URL=f"redis://app:{PASSWORD}@127.0.0.1:6379/0"))
    for shown in (repr(s), str(s), str(s.redacted()), repr(s.kafka), repr(s.redis)):
        assert PASSWORD not in shown
    assert s.redacted()["redis_url"] == "redis://app:***@127.0.0.1:6379/0"
    assert s.redacted()["kafka_sasl_password"] == "***"
    assert f"{s.kafka_sasl_password}" == "***" and s.kafka.sasl_password == Secret(PASSWORD)


def test_redis_tls_options_and_the_client_they_make(ca_file: Path) -> None:
    access = RedisAccess(f"rediss://app:{PASSWORD}@127.0.0.1:6380/0", tls_ca_file=ca_file)
    assert redis_options(access) == {
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
        "ssl_ca_certs": str(ca_file),
    }
    pool = connect_redis(access).connection_pool
    assert pool.connection_kwargs["ssl_ca_certs"] == str(ca_file)
    assert pool.connection_kwargs["password"] == PASSWORD
    assert PASSWORD not in repr(pool)


KAFKA_CLIENTS = {"KafkaProducer", "KafkaConsumer", "KafkaAdminClient", "AIOKafkaConsumer"}
KAFKA_CLIENTS |= {"AIOKafkaProducer", "AIOKafkaAdminClient"}
OPTION_BUILDERS = {"kafka_python_options", "aiokafka_options"}


def _calls(path: Path) -> list[ast.Call]:
    return [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)]


def _name(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")


@pytest.mark.parametrize("path", sorted((ROOT / "stream_app").rglob("*.py")), ids=str)
def test_every_client_goes_through_the_one_builder(path: Path) -> None:
    for call in _calls(path):
        name = _name(call)
        if name in KAFKA_CLIENTS:
            spread = [k.value for k in call.keywords if k.arg is None]
            built = [_name(v) for v in spread if isinstance(v, ast.Call)]
            assert set(built) & OPTION_BUILDERS, f"{path}:{call.lineno}: {name} without options"
        if name in {"from_url", "Redis", "StrictRedis"}:
            assert path.name == "connect.py", f"{path}:{call.lineno}: Redis opened directly"
