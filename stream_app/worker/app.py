"""The Faust application, built by a factory from ``Settings`` (never from import-time globals).

``streamrec worker`` is the entry point; for Faust's own command line this module also offers a
lazily built ``app`` (``faust -A stream_app.worker.app:app worker -l info``). The tables use the
in-memory store and are rebuilt from their changelogs on start, so no local RocksDB is needed;
Faust's own files go under ``STATE_DIR/faust/<app_id>``.
"""

from __future__ import annotations

from typing import Any

import faust

from stream_app.kafka.clients import faust_credentials
from stream_app.settings import Settings

#: Faust's ``producer_max_batch_size`` for the worker (Faust's default: 16 KiB)
PRODUCER_BATCH_BYTES = 256 * 1024


def faust_settings(settings: Settings) -> dict[str, Any]:
    """Faust configuration derived from ours (pure: easy to test and to read).

    >>> conf = faust_settings(Settings())
    >>> conf["broker"], conf["web_bind"], conf["topic_partitions"]
    (['kafka://127.0.0.1:9092'], '127.0.0.1', 4)
    """
    return {
        "broker": [f"kafka://{server}" for server in settings.kafka_bootstrap.split(",")],
        # SASL and/or TLS for Faust's consumer, producer and admin client (None: plaintext).
        "broker_credentials": faust_credentials(settings.kafka),
        "store": "memory://",
        "datadir": str(settings.state_path / "faust" / settings.app_id),
        "autodiscover": False,
        "topic_partitions": settings.event_partitions,
        "topic_replication_factor": settings.replication_factor,
        # Every send (changelogs, item deltas, dead letters) waits for min.insync.replicas
        # (acks=all, Faust's default, said here so nobody lowers it for speed unawares).
        "producer_acks": -1,
        # A new consumer group (first start, a test's unique app id) reads the topic from the
        # beginning, so events produced before the worker was up are not skipped.
        "consumer_auto_offset_reset": "earliest",
        # Faust binds 0.0.0.0 unless told: keep its web server on loopback by default.
        "web_bind": settings.web_host,
        "web_host": settings.web_host,
        "web_port": settings.web_port,
        "table_standby_replicas": 0,
        # Table rows go out through aiokafka, which fills one batch per partition at a time:
        # at Faust's 16 KiB that is three item rows per partition per broker round trip, and
        # Faust pauses every stream while over 100 table writes wait to be sent; larger
        # batches cut freshness (docs/stream.md, "Tuning").
        "producer_max_batch_size": PRODUCER_BATCH_BYTES,
        # A batch Redis cannot take is held and retried, never acknowledged (its events would
        # go uncounted), so waiting for every stream to empty would hang a stop or a
        # rebalance while Redis is down. Unacknowledged events are not committed: the next
        # owner processes them again, and the counted marks count each once.
        "stream_wait_empty": False,
    }


class StreamApp(faust.App):
    """``faust.App`` on our Kafka transport (``stream_app.kafka.transport``: a Faust recovery
    race lost records of partitions without a committed offset, and Faust's fetch wait is fixed
    at 1.5 s), which reads ``fetch_max_wait_ms`` from here, and without Faust's Monitor
    sensor."""

    #: the broker's longest hold of a fetch without new data (``Settings.fetch_max_wait_ms``)
    fetch_max_wait_ms: int | None = None

    def on_init_dependencies(self) -> Any:
        """Faust's dependencies, less its Monitor *sensor*.

        The Monitor keeps per-message bookkeeping (timestamps, deques, per-topic counters) for
        Faust's own web stats, which this product does not serve: our metrics are
        ``stream_app.worker.telemetry``. Taking it out of the sensors saves its per-message CPU
        (docs/stream.md, "Tuning"). The Monitor object
        stays: the consumer still reports end offsets and commits to it directly.
        """
        dependencies = super().on_init_dependencies()
        self.sensors.remove(self.monitor)
        return dependencies

    def _new_transport(self) -> Any:
        from stream_app.kafka.transport import Transport

        return Transport(self.conf.broker_consumer, self)


def create_app(settings: Settings) -> faust.App:
    """A Faust app with the user-side, item-side, catalog, control and model-updates agents,
    topics and tables.

    Examples
    --------
    >>> app = create_app(Settings(app_id="doc-app"))
    >>> sorted(app.agents)
    ['catalog', 'control', 'item-side', 'live-path', 'model-updates']
    """
    from stream_app.worker.agents import register_live_path

    app = StreamApp(settings.app_id, **faust_settings(settings))
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms
    register_live_path(app, settings)
    return app


_lazy_app: faust.App | None = None


def __getattr__(name: str) -> Any:
    """``stream_app.worker.app:app`` for ``faust -A``: built on first access, not at import."""
    global _lazy_app
    if name == "app":
        if _lazy_app is None:
            _lazy_app = create_app(Settings.from_env())
        return _lazy_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
