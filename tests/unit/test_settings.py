"""Settings: documented defaults, one ConfigError naming the variable per bad value, and the CLI's
single-line refusal (exit 2) when a variable is bad."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from stream_app import cli
from stream_app.settings import ConfigError, Settings, settings_table

FIELDS = {f.metadata["env"]: f for f in dataclasses.fields(Settings)}


def test_defaults_are_the_documented_local_stack() -> None:
    s = Settings.from_env({})
    assert s == Settings()
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert (s.topic_events, s.topic_dlq, s.topic_items, s.topic_model_updates) == (
        "events",
        "events.dlq",
        "items",
        "model-updates",
    )
    assert (s.event_partitions, s.replication_factor, s.top_n) == (4, 1, 20)
    assert s.log_level == "INFO"
    assert s.state_dir is None and s.model_dir is None


def test_state_dir_default_is_resolved_at_use(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    s = Settings.from_env({})
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert s.state_path == tmp_path / "xdg/streamrec"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert s.state_path == tmp_path / "home/.local/state/streamrec"
    assert s.model_store == s.state_path / "models"


def test_explicit_dirs_win(tmp_path: Path) -> None:
    s = Settings.from_env(
        {"STREAMREC_STATE_DIR": str(tmp_path / "st"), "STREAMREC_MODEL_DIR": str(tmp_path / "m")}
    )
    assert s.state_path == tmp_path / "st"
    assert s.model_store == tmp_path / "m"
    only_state = Settings.from_env({"STREAMREC_STATE_DIR": str(tmp_path / "st")})
    assert only_state.model_store == tmp_path / "st/models"


@pytest.mark.parametrize("var", sorted(FIELDS))
def test_empty_string_means_default(var: str) -> None:
    field = FIELDS[var]
    assert getattr(Settings.from_env({var: ""}), field.name) == field.default


def test_values_are_parsed_and_normalised() -> None:
    s = Settings.from_env(
        {
            "STREAMREC_KAFKA_BOOTSTRAP": " kafka-1:9092, kafka-2:9092 ",
            "STREAMREC_REDIS_URL": "rediss://cache.internal:6380/2",
            "STREAMREC_TOPIC_EVENTS": "shop.events_v2",
            "STREAMREC_TOP_N": " 50 ",
            "STREAMREC_POPULARITY_HALF_LIFE_S": "1e3",
            "STREAMREC_MODEL_POLL_S": "0",
            "STREAMREC_WEB_PORT": "65535",
            "STREAMREC_LOG_LEVEL": "debug",
            "STREAMREC_BATCH_IN_THREAD": " Yes ",
            "STREAMREC_REFRESH_WINDOW_S": "0",
            "STREAMREC_REFRESH_RATE": "12.5",
            "STREAMREC_REFRESH_MAX_USERS": "500",
        }
    )
    assert s.kafka_bootstrap == "kafka-1:9092,kafka-2:9092"
    assert s.redis_url == "rediss://cache.internal:6380/2"
    assert s.topic_events == "shop.events_v2"
    assert s.top_n == 50 and isinstance(s.top_n, int)
    assert s.popularity_half_life_s == 1000.0
    assert s.model_poll_s == 0.0
    assert s.web_port == 65535
    assert s.log_level == "DEBUG"
    assert s.batch_in_thread is True
    assert (s.refresh_window_s, s.refresh_rate, s.refresh_max_users) == (0.0, 12.5, 500)
    assert Settings.from_env({"STREAMREC_BATCH_IN_THREAD": "off"}).batch_in_thread is False
    assert Settings.from_env({"STREAMREC_REDIS_URL": "unix:///run/redis.sock"}).redis_url


def test_a_cluster_url_selects_cluster_mode_and_keeps_its_tls_files(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    plain = Settings.from_env({"STREAMREC_REDIS_URL": "redis+cluster://10.0.0.5:7000"})
    assert plain.redis.cluster and not plain.redis.uses_tls
    assert plain.redis.client_url == "redis://10.0.0.5:7000"
    env = {
        "STREAMREC_REDIS_URL": "rediss+cluster://a:pw@c:7000/0",
        "STREAMREC_REDIS_TLS_CA_FILE": str(ca),
    }
    tls = Settings.from_env(env)
    assert tls.redis.cluster and tls.redis.uses_tls and tls.redis.tls_ca_file == ca
    assert tls.redacted()["redis_url"] == "rediss+cluster://a:***@c:7000/0"
    assert not Settings().redis.cluster


def test_the_key_prefix_defaults_to_the_version_and_is_settable():
    assert Settings().redis_key_prefix == "streamrec:v1"
    env = {"STREAMREC_REDIS_KEY_PREFIX": "bench-run1:v1"}
    assert Settings.from_env(env).redis_key_prefix == "bench-run1:v1"


def test_a_bad_cluster_url_stops_start_up_with_one_message_naming_the_variable():
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"STREAMREC_REDIS_URL": "redis+cluster://cache:7000/3"})
    assert str(err.value).startswith(
        "STREAMREC_REDIS_URL='redis+cluster://cache:7000/3' is invalid"
    )
    assert "database 0 only" in str(err.value)


BAD = [
    ("STREAMREC_KAFKA_BOOTSTRAP", "localhost"),
    ("STREAMREC_KAFKA_BOOTSTRAP", "kafka:abc"),
    ("STREAMREC_KAFKA_BOOTSTRAP", "kafka:70000"),
    ("STREAMREC_KAFKA_BOOTSTRAP", ":9092"),
    ("STREAMREC_KAFKA_BOOTSTRAP", " , "),
    ("STREAMREC_REDIS_URL", "http://127.0.0.1:6379/0"),
    ("STREAMREC_REDIS_URL", "127.0.0.1:6379"),
    ("STREAMREC_REDIS_URL", "redis://"),
    ("STREAMREC_REDIS_URL", "redis://cache:port/0"),
    ("STREAMREC_REDIS_URL", "redis://cache:70000/0"),
    ("STREAMREC_REDIS_URL", "redis+cluster://cache:7000/1"),
    ("STREAMREC_REDIS_URL", "redis+cluster://"),
    ("STREAMREC_REDIS_URL", "redis+sentinel://cache:26379"),
    ("STREAMREC_REDIS_KEY_PREFIX", "streamrec:v1:"),
    ("STREAMREC_REDIS_KEY_PREFIX", "{streamrec}:v1"),
    ("STREAMREC_REDIS_KEY_PREFIX", "bench-*:v1"),
    ("STREAMREC_TOPIC_EVENTS", "my events"),
    ("STREAMREC_TOPIC_DLQ", "events/dlq"),
    ("STREAMREC_TOPIC_ITEMS", "x" * 250),
    ("STREAMREC_TOPIC_MODEL_UPDATES", ".."),
    ("STREAMREC_TOPIC_CONTROL", "control topic"),
    ("STREAMREC_EVENT_PARTITIONS", "0"),
    ("STREAMREC_REPLICATION_FACTOR", "-1"),
    ("STREAMREC_TOP_N", "1.5"),
    ("STREAMREC_TOP_N", "twenty"),
    ("STREAMREC_REC_TTL_S", "0"),
    ("STREAMREC_HISTORY_LEN", "-5"),
    ("STREAMREC_BATCH_MAX_EVENTS", "0"),
    ("STREAMREC_POPULARITY_HALF_LIFE_S", "0"),
    ("STREAMREC_POPULARITY_HALF_LIFE_S", "nan"),
    ("STREAMREC_SESSION_GAP_S", "inf"),
    ("STREAMREC_BATCH_MAX_DELAY_S", "-0.1"),
    ("STREAMREC_ITEM_BATCH_MAX_DELTAS", "0"),
    ("STREAMREC_ITEM_BATCH_DELAY_S", "0"),
    ("STREAMREC_FETCH_MAX_WAIT_MS", "0"),
    ("STREAMREC_BATCH_IN_THREAD", "maybe"),
    ("STREAMREC_MODEL_POLL_S", "-1"),
    ("STREAMREC_MODEL_POLL_S", "inf"),
    ("STREAMREC_TRAIN_WINDOW_EVENTS", "-1"),
    ("STREAMREC_TRAIN_WINDOW_S", "-5"),
    ("STREAMREC_MODEL_KEEP", "two"),
    ("STREAMREC_TRAIN_MIN_EVENTS", "0"),
    ("STREAMREC_TRAIN_POLL_S", "0"),
    ("STREAMREC_WEB_PORT", "0"),
    ("STREAMREC_WEB_PORT", "65536"),
    ("STREAMREC_WEB_PORT", "http"),
    ("STREAMREC_HITRATE_SAMPLE", "1.5"),
    ("STREAMREC_HITRATE_SAMPLE", "-0.1"),
    ("STREAMREC_HITRATE_SAMPLE", "nan"),
    ("STREAMREC_HITRATE_SAMPLE", "a tenth"),
    ("STREAMREC_HEALTH_WORKER_STALE_S", "0"),
    ("STREAMREC_HEALTH_LAG_WINDOW_S", "soon"),
    ("STREAMREC_CACHE_CHECK_S", "-1"),
    ("STREAMREC_REBUILD_USERS", "0"),
    ("STREAMREC_REBUILD_WAIT_S", "0"),
    ("STREAMREC_EVENT_WEIGHTS", "view"),
    ("STREAMREC_EVENT_WEIGHTS", "like=2"),
    ("STREAMREC_EVENT_WEIGHTS", "dislike=-1"),
    ("STREAMREC_EVENT_WEIGHTS", "purchase=0"),
    ("STREAMREC_EVENT_WEIGHTS", "purchase=nan"),
    ("STREAMREC_EVENT_WEIGHTS", "click=two"),
    ("STREAMREC_NEGATIVE_RATING_BELOW", "three"),
    ("STREAMREC_NEGATIVE_RATING_BELOW", "nan"),
    ("STREAMREC_NEGATIVE_RATING_BELOW", "-inf"),
    ("STREAMREC_COLD_SLOT", "0"),
    ("STREAMREC_COLD_SLOT", "fifth"),
    ("STREAMREC_REFRESH_WINDOW_S", "-1"),
    ("STREAMREC_REFRESH_WINDOW_S", "nan"),
    ("STREAMREC_REFRESH_RATE", "0"),
    ("STREAMREC_REFRESH_RATE", "fast"),
    ("STREAMREC_REFRESH_MAX_USERS", "0"),
    ("STREAMREC_REFRESH_MAX_USERS", "1e4"),
    ("STREAMREC_LOG_LEVEL", "LOUD"),
    ("STREAMREC_REDIS_TLS_CA_FILE", "/nonexistent/ca.pem"),
    ("STREAMREC_REDIS_TLS_CERT_FILE", "/nonexistent/client.pem"),
    ("STREAMREC_REDIS_TLS_KEY_FILE", "/nonexistent/client.key"),
    ("STREAMREC_REDIS_TLS_VERIFY", "maybe"),
    ("STREAMREC_KAFKA_SECURITY_PROTOCOL", "TLS"),
    ("STREAMREC_KAFKA_SASL_MECHANISM", "GSSAPI"),
    ("STREAMREC_KAFKA_SASL_PASSWORD_FILE", "/nonexistent/password"),
    ("STREAMREC_KAFKA_SSL_CAFILE", "/nonexistent/ca.pem"),
    ("STREAMREC_KAFKA_SSL_CERTFILE", "/nonexistent/client.pem"),
    ("STREAMREC_KAFKA_SSL_KEYFILE", "/nonexistent/client.key"),
    ("STREAMREC_SESSION_SLOTS", "-1"),
]


@pytest.mark.parametrize(("var", "value"), BAD)
def test_bad_value_raises_config_error_naming_the_variable(var: str, value: str) -> None:
    assert var in FIELDS, "the table above names a variable Settings no longer reads"
    with pytest.raises(ConfigError) as exc:
        Settings.from_env({var: value})
    message = str(exc.value)
    assert message.startswith(f"{var}=")
    assert repr(value) in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("value", "reason"),
    [("1.01", "from 0 to 1"), ("-0.1", "from 0 to 1"), ("nan", "from 0 to 1"), ("x", "float")],
)
def test_hitrate_sample_is_a_share_from_0_to_1(value: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        Settings.from_env({"STREAMREC_HITRATE_SAMPLE": value})
    assert Settings().hitrate_sample == 0.02
    for ok, expected in (("0", 0.0), ("1", 1.0), (" 0.25 ", 0.25)):
        assert Settings.from_env({"STREAMREC_HITRATE_SAMPLE": ok}).hitrate_sample == expected


def test_event_weights_override_the_defaults_and_reach_the_models_rules() -> None:
    default = Settings().feedback
    assert dict(default.weights) == {
        "view": 1.0,
        "click": 2.0,
        "add_to_cart": 3.0,
        "purchase": 5.0,
        "rating": 5.0,
    }
    assert default.negative_rating_below is None
    s = Settings.from_env(
        {
            "STREAMREC_EVENT_WEIGHTS": " purchase = 10 ,view=0.5,",
            "STREAMREC_NEGATIVE_RATING_BELOW": " 3 ",
        }
    )
    assert dict(s.event_weights) == {**dict(default.weights), "purchase": 10.0, "view": 0.5}
    assert s.feedback.negative_rating_below == 3.0
    off = Settings.from_env({"STREAMREC_NEGATIVE_RATING_BELOW": "OFF"})
    assert off.negative_rating_below is None


def test_the_cold_slot_is_a_place_from_one_or_off() -> None:
    """The setting counts places from 1, as a reader does; scoring counts from 0."""
    assert Settings().scoring_params.cold_slot is None
    assert Settings.from_env({"STREAMREC_COLD_SLOT": "5"}).scoring_params.cold_slot == 4
    assert Settings.from_env({"STREAMREC_COLD_SLOT": "off"}).cold_slot is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("dislike=1", "'dislike' is negative feedback: it has no weight"),
        ("skip=0.5", "'skip' is negative feedback"),
        ("like=2", "'like=2' is not type=weight with a type of view, click"),
        ("purchase", "'purchase' is not type=weight"),
        ("view=-1", "the weight of 'view' must be a positive number"),
        ("view=inf", "the weight of 'view' must be a positive number"),
        ("view=x", "the weight of 'view' must be a positive number"),
    ],
)
def test_a_bad_event_weight_names_the_variable_and_the_rule(value: str, reason: str) -> None:
    with pytest.raises(ConfigError) as exc:
        Settings.from_env({"STREAMREC_EVENT_WEIGHTS": value})
    assert str(exc.value).startswith(f"STREAMREC_EVENT_WEIGHTS={value!r} is invalid: {reason}")


def test_every_validated_setting_has_a_bad_case() -> None:
    free_form = {"STREAMREC_STATE_DIR", "STREAMREC_MODEL_DIR", "STREAMREC_APP_ID"}
    free_form |= {"STREAMREC_WEB_HOST"}
    free_form |= {"STREAMREC_KAFKA_SASL_USERNAME", "STREAMREC_KAFKA_SASL_PASSWORD"}
    assert set(FIELDS) - free_form == {var for var, _ in BAD}


def test_config_error_is_a_value_error_and_the_first_bad_variable_wins() -> None:
    assert issubclass(ConfigError, ValueError)
    with pytest.raises(ConfigError, match="STREAMREC_KAFKA_BOOTSTRAP"):
        Settings.from_env({"STREAMREC_KAFKA_BOOTSTRAP": "x", "STREAMREC_TOP_N": "x"})


def test_unrelated_variables_are_ignored() -> None:
    env = {"STREAMREC_UNKNOWN": "whatever", "KAFKA_PORT": "nope", "PATH": "/bin"}
    assert Settings.from_env(env) == Settings()


def test_from_env_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_TOP_N", "7")
    assert Settings.from_env().top_n == 7


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().top_n = 3  # type: ignore[misc]


def test_settings_table_lists_every_variable_once() -> None:
    rows = settings_table()
    assert [var for var, _, _ in rows] == [f.metadata["env"] for f in dataclasses.fields(Settings)]
    assert dict((var, default) for var, default, _ in rows)["STREAMREC_TOP_N"] == "20"
    assert all(doc for _, _, doc in rows)


@pytest.mark.parametrize("command", ["topics", "produce --generate 1"])
def test_cli_refuses_a_bad_variable_with_one_line_and_exit_2(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STREAMREC_KAFKA_BOOTSTRAP", "no-port-here")
    assert cli.main(command.split()) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("streamrec: configuration error: STREAMREC_KAFKA_BOOTSTRAP=")
    assert captured.out == ""


def test_a_training_window_below_the_minimum_events_stops_start_up() -> None:
    with pytest.raises(ConfigError, match="STREAMREC_TRAIN_WINDOW_EVENTS=500 is below"):
        Settings.from_env({"STREAMREC_TRAIN_WINDOW_EVENTS": "500"})
    assert Settings.from_env({"STREAMREC_TRAIN_WINDOW_EVENTS": "0"}).train_window_events == 0


def test_the_session_blend_gets_one_place_by_default_and_none_when_off() -> None:
    assert Settings.from_env({}).session_slots == 1
    assert Settings.from_env({"STREAMREC_SESSION_SLOTS": "0"}).session_slots == 0
