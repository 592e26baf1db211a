"""One typed, frozen settings object read from ``STREAMREC_*`` environment variables.

Why one object: every process (worker, producer, trainer, API, benchmarks, tests) must agree on
topic names, ports and sizes, and a bad value must stop start-up with one message that names the
variable, instead of surfacing later as a confusing error deep inside Kafka or Redis code.
Settings are read at the entry point (``Settings.from_env()``), never at import time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlsplit, urlunsplit

from models.events import DEFAULT_WEIGHTS, EventWeights, Feedback, parse_weights
from models.online.stream.scoring import ScoringParams
from models.online.stream.session import SESSION_SLOTS

ENV_PREFIX = "STREAMREC_"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the environment variable."""


def default_state_dir() -> Path:
    """Machine-wide state (Kafka data, PID files, logs, model store), shared by every checkout.

    One stack per machine: a second clone finds the stack the first one started.
    """
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "streamrec"


def _parse_bootstrap(raw: str) -> str:
    servers = [s.strip() for s in raw.split(",") if s.strip()]
    if not servers:
        raise ValueError("expected host:port[,host:port...]")
    for server in servers:
        host, sep, port = server.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{server!r} is not host:port")
    return ",".join(servers)


#: URL schemes of a Redis Cluster (any one node's address; the client finds the others).
REDIS_CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


def _parse_redis_url(raw: str) -> str:
    """A Redis URL; ``redis+cluster://host:port`` (``rediss+cluster://`` with TLS) names any
    node of a Redis Cluster, which has one database only (so no ``/db`` other than 0).

    >>> _parse_redis_url("redis+cluster://10.0.0.5:7000")
    'redis+cluster://10.0.0.5:7000'
    >>> _parse_redis_url("redis+cluster://10.0.0.5:7000/2")
    Traceback (most recent call last):
    ValueError: a Redis Cluster has database 0 only ...
    """
    parsed = urlparse(raw)
    if parsed.scheme not in {"redis", "rediss", "unix", *REDIS_CLUSTER_SCHEMES}:
        raise ValueError(
            "expected redis://host:port/db, rediss://..., unix://... or "
            "redis+cluster://host:port (rediss+cluster:// with TLS)"
        )
    if parsed.scheme != "unix" and not parsed.hostname:
        raise ValueError("missing host")
    try:
        _ = parsed.port
    except ValueError as exc:
        raise ValueError(f"bad port: {exc}") from None
    if parsed.scheme in REDIS_CLUSTER_SCHEMES and parsed.path.strip("/") not in {"", "0"}:
        raise ValueError(f"a Redis Cluster has database 0 only, not {parsed.path.strip('/')!r}")
    return raw


def _parse_key_prefix(raw: str) -> str:
    """A Redis key prefix: what ``CacheKeys`` accepts (no trailing ':', no hash-tag braces),
    and no ``SCAN MATCH`` glob characters, so ``{prefix}:*`` selects exactly its keys.

    >>> _parse_key_prefix("bench-1:v1")
    'bench-1:v1'
    >>> _parse_key_prefix("a*:v1")
    Traceback (most recent call last):
    ValueError: ...
    """
    bad = set("{}*?[]\\ ") & set(raw)
    if not raw or raw.endswith(":") or bad:
        raise ValueError(
            f"{raw!r}: expected a non-empty prefix without a trailing ':', braces, glob "
            "characters or spaces"
        )
    return raw


def _parse_topic(raw: str) -> str:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    if not raw or len(raw) > 249 or not set(raw) <= allowed or raw in {".", ".."}:
        raise ValueError("a Kafka topic name is 1-249 of [a-zA-Z0-9._-]")
    return raw


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be an integer >= 0")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError("must be a positive number")
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if not value >= 0 or value == float("inf"):
        raise ValueError("must be a number >= 0")
    return value


def _fraction(raw: str) -> float:
    """A share in [0, 1] (NaN fails both comparisons, so it is refused too)."""
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be a number from 0 to 1")
    return value


def _flag(raw: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case)."""
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("one of 1, 0, true, false, yes, no, on, off")


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 < value < 65536:
        raise ValueError("must be a TCP port 1-65535")
    return value


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError("one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
    return level


def _rating_threshold(raw: str) -> float | None:
    """A rating below which ratings are negative, or ``off`` (none is)."""
    if raw.lower() == "off":
        return None
    value = float(raw)
    if value != value or abs(value) == float("inf"):
        raise ValueError("must be a finite number or 'off'")
    return value


def _place_or_off(raw: str) -> int | None:
    """A place in a list, 1 for the first (returned 0-based), or ``off``."""
    if raw.lower() == "off":
        return None
    value = int(raw)
    if value < 1:
        raise ValueError("must be a place from 1 (the first) or 'off'")
    return value - 1


class Secret:
    """A password that prints as ``***``: repr, str, f-strings, logs, tracebacks and the settings'
    summary never show it; ``reveal()`` is the one way out, where a client library takes it.

    >>> pw = Secret("hunter2")
    >>> pw, f"{pw}", pw.reveal()
    (Secret('***'), '***', 'hunter2')
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, for logs and messages.

    >>> redact_url("rediss://app:s3cret@cache:6380/0")
    'rediss://app:***@cache:6380/0'
    >>> redact_url("redis://127.0.0.1:6379/0")
    'redis://127.0.0.1:6379/0'
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _secret(raw: str) -> Secret:
    return Secret(raw)


def _readable_file(raw: str) -> Path:
    """A file that exists and can be read now: a typo in a certificate or password path stops
    start-up here rather than as a TLS error deep inside a client library."""
    path = Path(raw).expanduser()
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    return path


def _choice(*allowed: str) -> Callable[[str], str]:
    """A parser accepting one of ``allowed`` (any case), returned as written in ``allowed``."""
    by_upper = {a.upper(): a for a in allowed}

    def parse(raw: str) -> str:
        try:
            return by_upper[raw.upper()]
        except KeyError:
            raise ValueError("one of " + ", ".join(allowed)) from None

    return parse


KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
REDIS_VERIFY_MODES = ("required", "optional", "none")


def _env(
    name: str, parser: Callable[[str], Any], default: Any, doc: str, shown: str | None = None
) -> Any:
    """A dataclass field read from ``STREAMREC_<NAME>``; ``doc`` feeds the README table, and
    ``shown`` is the default as written there when ``str(default)`` is not how one writes it."""
    meta = {"env": ENV_PREFIX + name, "parse": parser, "doc": doc, "shown": shown}
    return field(default=default, metadata=meta)


@dataclass(frozen=True, slots=True)
class KafkaAccess:
    """Where the brokers are and how to log in: everything a Kafka client of any library needs,
    built by ``stream_app.kafka.clients`` into that library's options (one place, so no client
    is left on plaintext by accident).

    >>> KafkaAccess("k:9093", "SASL_SSL", "SCRAM-SHA-256", "app", Secret("pw"))
    KafkaAccess(SASL_SSL://k:9093, SCRAM-SHA-256 user 'app')
    """

    bootstrap: str = "127.0.0.1:9092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-256"
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @property
    def servers(self) -> list[str]:
        return self.bootstrap.split(",")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in {"SSL", "SASL_SSL"}

    def __repr__(self) -> str:
        who = f", {self.sasl_mechanism} user {self.sasl_username!r}" if self.uses_sasl else ""
        return f"KafkaAccess({self.security_protocol}://{self.bootstrap}{who})"


@dataclass(frozen=True, slots=True, repr=False)
class RedisAccess:
    """A Redis URL (its ``user:password@`` included) and, for ``rediss://``, the TLS files and
    verification mode redis-py takes beside it; ``stream_app.cache.connect`` opens every client
    from one of these.

    >>> RedisAccess("rediss://app:pw@cache:6380/0")
    RedisAccess('rediss://app:***@cache:6380/0')
    """

    url: str = "redis://127.0.0.1:6379/0"
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_verify: str = "required"

    @property
    def uses_tls(self) -> bool:
        return self.url.startswith(("rediss://", "rediss+cluster://"))

    @property
    def cluster(self) -> bool:
        """Whether the URL names a Redis Cluster (``redis+cluster://``, ``rediss+cluster://``).

        >>> RedisAccess("rediss+cluster://cache:7000").cluster, RedisAccess().cluster
        (True, False)
        """
        return self.url.split("://", 1)[0] in REDIS_CLUSTER_SCHEMES

    @property
    def client_url(self) -> str:
        """The URL as redis-py takes it: the cluster client reads plain ``redis://`` and
        ``rediss://`` (which client to open is ``cluster``'s choice, not the scheme's).

        >>> RedisAccess("rediss+cluster://app:pw@cache:7000").client_url
        'rediss://app:pw@cache:7000'
        """
        return self.url.replace("+cluster://", "://", 1) if self.cluster else self.url

    def __repr__(self) -> str:
        return f"RedisAccess({redact_url(self.url)!r})"


@dataclass(frozen=True, slots=True, repr=False)
class Settings:
    """Everything a StreamRec process is configured by. Field defaults are the documented ones."""

    kafka_bootstrap: str = _env(
        "KAFKA_BOOTSTRAP", _parse_bootstrap, "127.0.0.1:9092", "Kafka bootstrap servers"
    )
    redis_url: str = _env(
        "REDIS_URL",
        _parse_redis_url,
        "redis://127.0.0.1:6379/0",
        "Redis connection URL: `redis://[user:password@]host:port/db`, `rediss://` for TLS; "
        "`redis+cluster://host:port` (any node; `rediss+cluster://` with TLS) for a Redis Cluster",
    )
    redis_tls_ca_file: Path | None = _env(
        "REDIS_TLS_CA_FILE",
        _readable_file,
        None,
        "CA certificate(s) that sign the Redis server's (rediss://; default: the system's)",
        shown="unset",
    )
    redis_tls_cert_file: Path | None = _env(
        "REDIS_TLS_CERT_FILE",
        _readable_file,
        None,
        "Client certificate for Redis TLS (optional)",
        shown="unset",
    )
    redis_tls_key_file: Path | None = _env(
        "REDIS_TLS_KEY_FILE", _readable_file, None, "Key of that client certificate", shown="unset"
    )
    redis_tls_verify: str = _env(
        "REDIS_TLS_VERIFY",
        _choice(*REDIS_VERIFY_MODES),
        "required",
        "Redis server certificate check: required, optional or none",
    )
    redis_key_prefix: str = _env(
        "REDIS_KEY_PREFIX",
        _parse_key_prefix,
        "streamrec:v1",
        "Prefix of every Redis key (the value format's version); another one keeps a second "
        "deployment or a benchmark run apart on a shared Redis Cluster, which has database 0 only",
    )
    kafka_security_protocol: str = _env(
        "KAFKA_SECURITY_PROTOCOL",
        _choice(*KAFKA_PROTOCOLS),
        "PLAINTEXT",
        "Kafka listener protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
    )
    kafka_sasl_mechanism: str = _env(
        "KAFKA_SASL_MECHANISM",
        _choice(*SASL_MECHANISMS),
        "SCRAM-SHA-256",
        "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
    )
    kafka_sasl_username: str | None = _env(
        "KAFKA_SASL_USERNAME", str, None, "SASL user (SASL_* protocols)", shown="unset"
    )
    kafka_sasl_password: Secret | None = _env(
        "KAFKA_SASL_PASSWORD", _secret, None, "SASL password (never logged or shown)", shown="unset"
    )
    kafka_sasl_password_file: Path | None = _env(
        "KAFKA_SASL_PASSWORD_FILE",
        _readable_file,
        None,
        "File holding the SASL password instead (read whenever a client connects)",
        shown="unset",
    )
    kafka_ssl_cafile: Path | None = _env(
        "KAFKA_SSL_CAFILE",
        _readable_file,
        None,
        "CA certificate(s) that sign the brokers' (SSL, SASL_SSL; default: the system's)",
        shown="unset",
    )
    kafka_ssl_certfile: Path | None = _env(
        "KAFKA_SSL_CERTFILE",
        _readable_file,
        None,
        "Client certificate for Kafka TLS (optional)",
        shown="unset",
    )
    kafka_ssl_keyfile: Path | None = _env(
        "KAFKA_SSL_KEYFILE", _readable_file, None, "Key of that client certificate", shown="unset"
    )
    topic_events: str = _env("TOPIC_EVENTS", _parse_topic, "events", "Input events topic")
    topic_dlq: str = _env("TOPIC_DLQ", _parse_topic, "events.dlq", "Dead-letter topic")
    topic_items: str = _env("TOPIC_ITEMS", _parse_topic, "items", "Item catalog (compacted)")
    topic_model_updates: str = _env(
        "TOPIC_MODEL_UPDATES", _parse_topic, "model-updates", "Model version announcements"
    )
    topic_control: str = _env(
        "TOPIC_CONTROL",
        _parse_topic,
        "control",
        "Commands the workers obey (forget-user), keyed by user, partitioned like the events",
    )
    event_partitions: int = _env(
        "EVENT_PARTITIONS", _positive_int, 4, "Partitions of the events topic"
    )
    replication_factor: int = _env(
        "REPLICATION_FACTOR",
        _positive_int,
        1,
        "Replication factor of every topic the app creates; above 1 they get "
        "`min.insync.replicas` = a majority (2 of 3) and producers wait for it (`acks=all`); "
        "must not exceed the cluster's brokers",
    )
    top_n: int = _env("TOP_N", _positive_int, 20, "Recommendations kept per user")
    rec_ttl_s: int = _env("REC_TTL_S", _positive_int, 7 * 24 * 3600, "TTL of a user's cached recs")
    popularity_half_life_s: float = _env(
        "POPULARITY_HALF_LIFE_S", _positive_float, 3600.0, "Half-life of decayed popularity"
    )
    history_len: int = _env("HISTORY_LEN", _positive_int, 200, "Items kept per user history")
    session_gap_s: float = _env(
        "SESSION_GAP_S", _positive_float, 1800.0, "Inactivity gap that ends a session"
    )
    # why 1: models.online.stream.session.SESSION_SLOTS
    session_slots: int = _env(
        "SESSION_SLOTS",
        _non_negative_int,
        SESSION_SLOTS,
        "Places of each list the session model gets while one serves (0: none)",
    )
    batch_max_events: int = _env(
        "BATCH_MAX_EVENTS", _positive_int, 1000, "Max events per worker micro-batch"
    )
    batch_max_delay_s: float = _env(
        "BATCH_MAX_DELAY_S", _positive_float, 0.05, "Max wait to fill a micro-batch"
    )
    item_batch_max_deltas: int = _env(
        "ITEM_BATCH_MAX_DELTAS",
        _positive_int,
        1000,
        "Max item-delta messages (one per user-side batch and partition) per item-side batch",
    )
    item_batch_delay_s: float = _env(
        "ITEM_BATCH_DELAY_S",
        _positive_float,
        2.0,
        "Max wait to fill an item-side batch (neighbour lists lag by up to this)",
    )
    batch_in_thread: bool = _env(
        "BATCH_IN_THREAD",
        _flag,
        False,
        "Run every batch's Redis work and scoring in a thread (default: only while a session "
        "model serves or Redis is failing)",
    )
    fetch_max_wait_ms: int = _env(
        "FETCH_MAX_WAIT_MS",
        _positive_int,
        20,
        "Longest the broker holds the worker's fetch when no new data (Faust's own: 1500)",
    )
    state_dir: Path | None = _env(
        "STATE_DIR", Path, None, "Stack data, logs, PIDs (default ~/.local/state/streamrec)"
    )
    model_dir: Path | None = _env(
        "MODEL_DIR", Path, None, "Session-model store (default: STATE_DIR/models)"
    )
    app_id: str = _env("APP_ID", str, "streamrec", "Faust app id / consumer group")
    web_host: str = _env("WEB_HOST", str, "127.0.0.1", "HTTP API bind address")
    web_port: int = _env("WEB_PORT", _port, 6066, "HTTP API port")
    model_poll_s: float = _env(
        "MODEL_POLL_S", _non_negative_float, 60.0, "Model store poll period (0 = off)"
    )
    # The trainer over time (``streamrec train-session --dataset kafka --every``): what each
    # cycle reads, how many versions the store keeps, how soon the first cycle trains.
    train_window_events: int = _env(
        "TRAIN_WINDOW_EVENTS",
        _non_negative_int,
        1_000_000,
        "The trainer reads only the newest this many events of the topic per cycle (0 = all)",
    )
    train_window_s: float = _env(
        "TRAIN_WINDOW_S",
        _non_negative_float,
        0.0,
        "The trainer trains on the events within this many seconds of stream time before the "
        "newest event (0 = no time limit)",
    )
    model_keep: int = _env(
        "MODEL_KEEP",
        _non_negative_int,
        5,
        "Versions the trainer keeps in the model store, the newest (0 = all; the pinned, the "
        "serving and the last accepted one are never deleted)",
    )
    train_min_events: int = _env(
        "TRAIN_MIN_EVENTS",
        _positive_int,
        1000,
        "A periodic trainer's cycle with fewer events tries again after STREAMREC_TRAIN_POLL_S, "
        "not after its period (the first cycle trains as soon as this many exist)",
    )
    train_poll_s: float = _env(
        "TRAIN_POLL_S",
        _positive_float,
        10.0,
        "How often a periodic trainer looks again for events while the topic holds too few",
    )
    # Each sampled event costs one extra scoring, so the default sample is small; raise it
    # where the estimate must be tight (the benchmark's quality phase does).
    hitrate_sample: float = _env(
        "HITRATE_SAMPLE",
        _fraction,
        0.02,
        "Share of events judged for the sequential online HitRate@10 (0 = off)",
    )
    health_worker_stale_s: float = _env(
        "HEALTH_WORKER_STALE_S",
        _positive_float,
        30.0,
        "/health is degraded when no worker has reported for this long (idle ones report "
        "every 10 s)",
    )
    health_lag_window_s: float = _env(
        "HEALTH_LAG_WINDOW_S",
        _positive_float,
        60.0,
        "/health is degraded when the consumer lag grew at every reading for this long",
    )
    # The refresh after a session-model swap (``stream_app.worker.refresh``): which users, how
    # many and how fast; the rate bounds its share of the worker against the live path.
    refresh_window_s: float = _env(
        "REFRESH_WINDOW_S",
        _non_negative_float,
        3600.0,
        "After a session-model swap, the lists of the users this worker served within this "
        "many seconds are recomputed with it (0 = off)",
    )
    refresh_rate: float = _env(
        "REFRESH_RATE",
        _positive_float,
        100.0,
        "Most lists that refresh recomputes per second (in small batches between the live path's)",
    )
    refresh_max_users: int = _env(
        "REFRESH_MAX_USERS",
        _positive_int,
        10_000,
        "Most recently active users remembered for that refresh, per user-side partition",
    )
    # Read by the worker and by ``streamrec evaluate`` alike (``feedback``): what is served
    # and what is evaluated count events the same way.
    event_weights: EventWeights = _env(
        "EVENT_WEIGHTS",
        parse_weights,
        DEFAULT_WEIGHTS,
        "Weight of each positive event type, `type=weight,...` over the defaults (rating: a "
        "5-star one's; dislike and skip are negative and have none)",
    )
    negative_rating_below: float | None = _env(
        "NEGATIVE_RATING_BELOW",
        _rating_threshold,
        None,
        "Ratings strictly below this are negative feedback, like a dislike (off: none is)",
        shown="off",
    )
    cold_slot: int | None = _env(
        "COLD_SLOT",
        _place_or_off,
        None,
        "The place in every list kept for the user's closest cold catalog item (exploration "
        "for new items; 5: the fifth), whatever the ranker scores it (off: none)",
        shown="off",
    )
    cache_check_s: float = _env(
        "CACHE_CHECK_S",
        _non_negative_float,
        1.0,
        "How often the worker checks that Redis kept its data (the generation marker) and "
        "rebuilds what its tables hold when it did not (0 = off)",
    )
    rebuild_users: int = _env(
        "REBUILD_USERS",
        _positive_int,
        100_000,
        "Most users per worker whose lists a rebuild recomputes, the most recently active first",
    )
    rebuild_wait_s: float = _env(
        "REBUILD_WAIT_S",
        _positive_float,
        30.0,
        "Longest a rebuild step waits for other workers' earlier steps (norms, then lists, "
        "then users' lists) before it goes on without them",
    )
    log_level: str = _env("LOG_LEVEL", _log_level, "INFO", "Log level")

    def __post_init__(self) -> None:
        """Settings that only make sense together: a wrong pairing stops start-up here, with the
        variables named, instead of a client silently connecting without the credentials.

        >>> Settings(kafka_sasl_username="app")
        Traceback (most recent call last):
        ConfigError: STREAMREC_KAFKA_SASL_USERNAME is set but ... does not use SASL; ...
        """
        problem = _security_problem(self) or _trainer_problem(self)
        if problem:
            raise ConfigError(problem)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.redacted().items())
        return f"Settings({shown})"

    def redacted(self) -> dict[str, str]:
        """Every setting as text with its secrets masked (the Redis URL's password, the SASL
        password): what logs, error messages and summaries may show.

        >>> Settings(redis_url="redis://app:pw@h:6379/0").redacted()["redis_url"]
        'redis://app:***@h:6379/0'
        """
        shown = {f.name: str(getattr(self, f.name)) for f in fields(self)}
        shown["redis_url"] = redact_url(self.redis_url)
        return shown

    @property
    def kafka(self) -> KafkaAccess:
        """How to reach and log in to Kafka; a password file is read now, so a rotated password
        is picked up by the next client made."""
        password = self.kafka_sasl_password
        if password is None and self.kafka_sasl_password_file is not None:
            text = self.kafka_sasl_password_file.read_text(encoding="utf-8")
            password = Secret(text.rstrip("\r\n"))
        return KafkaAccess(
            self.kafka_bootstrap,
            self.kafka_security_protocol,
            self.kafka_sasl_mechanism,
            self.kafka_sasl_username,
            password,
            self.kafka_ssl_cafile,
            self.kafka_ssl_certfile,
            self.kafka_ssl_keyfile,
        )

    @property
    def redis(self) -> RedisAccess:
        """How to reach and log in to Redis (the URL carries user and password)."""
        return RedisAccess(
            self.redis_url,
            self.redis_tls_ca_file,
            self.redis_tls_cert_file,
            self.redis_tls_key_file,
            self.redis_tls_verify,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every field from the environment; raise ConfigError naming the bad variable."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f.metadata["env"]
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            try:
                values[f.name] = f.metadata["parse"](raw.strip())
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{name}={raw!r} is invalid: {exc}") from None
        return cls(**values)

    @classmethod
    def is_set(cls, name: str, environ: Mapping[str, str] | None = None) -> bool:
        """Whether the environment sets field ``name`` (not left to its default): e.g. the
        trainer announces a new model on Kafka by default only where Kafka was configured.

        >>> Settings.is_set("kafka_bootstrap", {"STREAMREC_KAFKA_BOOTSTRAP": "k:9092"})
        True
        >>> Settings.is_set("kafka_bootstrap", {"STREAMREC_KAFKA_BOOTSTRAP": ""})
        False
        """
        env = os.environ if environ is None else environ
        (found,) = [f for f in fields(cls) if f.name == name]
        return bool(env.get(found.metadata["env"]))

    @property
    def feedback(self) -> Feedback:
        """How the models read events (weights, negatives), for the worker and the evaluator."""
        return Feedback(self.event_weights, self.negative_rating_below)

    @property
    def scoring_params(self) -> ScoringParams:
        """How the stream model scores, as far as it is configurable (the worker and
        ``streamrec evaluate`` read the same)."""
        return ScoringParams(cold_slot=self.cold_slot)

    @property
    def state_path(self) -> Path:
        """The state directory, resolved now (not at import time) from XDG_STATE_HOME or HOME."""
        return self.state_dir if self.state_dir is not None else default_state_dir()

    @property
    def model_store(self) -> Path:
        return self.model_dir if self.model_dir is not None else self.state_path / "models"

    @property
    def topic_item_deltas(self) -> str:
        """The worker's internal topic of item co-occurrence deltas, named after its app id (so
        each consumer group has its own; ``stream_app.kafka.admin`` creates it)."""
        return f"{self.app_id}-item-deltas"

    @property
    def min_insync_replicas(self) -> int:
        """Replicas that must hold a write before it is acknowledged: a majority, so that with a
        replication factor of 3 one broker may die without losing an acknowledged event and
        writes go on (2 of 3); 1 on a single broker.

        >>> [Settings(replication_factor=n).min_insync_replicas for n in (1, 2, 3, 5)]
        [1, 2, 2, 3]
        """
        return self.replication_factor // 2 + 1


def _trainer_problem(s: Settings) -> str | None:
    """A window smaller than the events a cycle needs would never train: say so at start."""
    if 0 < s.train_window_events < s.train_min_events:
        return (
            f"STREAMREC_TRAIN_WINDOW_EVENTS={s.train_window_events} is below "
            f"STREAMREC_TRAIN_MIN_EVENTS={s.train_min_events}: the trainer would never train"
        )
    return None


def _security_problem(s: Settings) -> str | None:
    """What is wrong with the credential and TLS settings taken together, or None."""
    env = {f.name: f.metadata["env"] for f in fields(Settings)}
    protocol = f"{env['kafka_security_protocol']}={s.kafka_security_protocol}"
    sasl = s.kafka_security_protocol.startswith("SASL_")
    tls = s.kafka_security_protocol in {"SSL", "SASL_SSL"}
    password, password_file = env["kafka_sasl_password"], env["kafka_sasl_password_file"]
    has_password = s.kafka_sasl_password is not None or s.kafka_sasl_password_file is not None
    if s.kafka_sasl_password is not None and s.kafka_sasl_password_file is not None:
        return f"set {password} or {password_file}, not both"
    if sasl and s.kafka_sasl_username is None:
        return f"{protocol} needs {env['kafka_sasl_username']}"
    if sasl and not has_password:
        return f"{protocol} needs {password} or {password_file}"
    given = [
        env[name]
        for name in ("kafka_sasl_username", "kafka_sasl_password", "kafka_sasl_password_file")
        if getattr(s, name) is not None
    ]
    if given and not sasl:
        return (
            f"{given[0]} is set but {protocol} does not use SASL; use SASL_SSL (or SASL_PLAINTEXT)"
        )
    for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
        if getattr(s, name) is not None and not tls:
            return f"{env[name]} is set but {protocol} does not use TLS; use SSL or SASL_SSL"
    for name in ("redis_tls_ca_file", "redis_tls_cert_file", "redis_tls_key_file"):
        if getattr(s, name) is not None and not s.redis.uses_tls:
            return f"{env[name]} is set but {env['redis_url']} is not a rediss:// (TLS) URL"
    return None


def settings_table() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) rows, for the README's configuration table."""
    rows = []
    for f in fields(Settings):
        default = f.metadata["shown"] or ("" if f.default is None else str(f.default))
        rows.append((f.metadata["env"], default, f.metadata["doc"]))
    return rows


def settings_markdown() -> str:
    """The README's configuration table, generated so the README cannot drift from the code."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for env, default, doc in settings_table():
        shown = f"`{default}`" if default else "(derived)"
        lines.append(f"| `{env}` | {shown} | {doc} |")
    return "\n".join(lines)
