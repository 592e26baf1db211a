"""The worker group's consumer lag for ``/metrics``, read from the broker with kafka-python's
admin client in a thread and reused for a few seconds, so scrapes cost the broker little and the
lag stays readable while every worker is down (when it grows).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from stream_app.settings import KafkaAccess

log = logging.getLogger(__name__)


class LagProbe:
    """The workers' consumer-group lag per topic, read from Kafka (not from the workers).

    Why here: lag is what an operator alerts on first, and it must be readable when every worker
    is down (that is when it grows). Each read asks the broker for end offsets and the group's
    committed offsets (``stream_app.kafka.admin.consumer_lag``), in a thread; a result is
    reused for ``ttl_s`` so frequent scrapes cost the broker nothing extra.
    ``topics`` are read in that order; a topic that does not exist (yet) is left out, and with
    Kafka unreachable there are no lag lines at all (a partition the group never committed
    counts whole: a new group reads from the earliest offset).
    """

    def __init__(
        self, kafka: KafkaAccess, group: str, topics: Sequence[str], ttl_s: float = 5.0
    ) -> None:
        self.kafka = kafka
        self.group = group
        self.topics = list(topics)
        self.ttl_s = ttl_s
        self._admin: Any = None
        self._cached: tuple[float, dict[str, int]] | None = None
        self._kafka_down = False
        # One broker read at a time: the sampler and a scrape can ask together, and the admin
        # client is not thread-safe; the second caller then gets the fresh reading.
        self._reading = asyncio.Lock()

    def _read(self) -> dict[str, int]:
        from kafka.admin import KafkaAdminClient

        from stream_app.kafka.admin import consumer_lag
        from stream_app.kafka.clients import kafka_python_options

        try:
            if self._admin is None:
                self._admin = KafkaAdminClient(
                    **kafka_python_options(self.kafka), request_timeout_ms=5000
                )
            lags = {t: consumer_lag(self._admin, self.group, t) for t in self.topics}
        except Exception as exc:  # Kafka down: no lag lines, and reconnect next time
            # Once per outage: the dashboard's sampler asks every few seconds.
            log.log(
                logging.DEBUG if self._kafka_down else logging.WARNING,
                "consumer lag unavailable: %r",
                exc,
            )
            self._kafka_down = True
            self.close()
            return {}
        if self._kafka_down:
            log.info("consumer lag readable again")
        self._kafka_down = False
        return {t: lag for t, lag in lags.items() if lag is not None}

    async def lag(self) -> dict[str, int]:
        async with self._reading:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self.ttl_s:
                self._cached = (now, await asyncio.to_thread(self._read))
            return self._cached[1]

    def close(self) -> None:
        if self._admin is not None:
            try:
                self._admin.close()
            finally:
                self._admin = None
