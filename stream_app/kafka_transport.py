"""Faust's aiokafka transport with two fixes: uncommitted source partitions restart from the
start, and the fetch wait is ours to set.

Why this exists (found by the SIGKILL recovery test, which lost events in about 1 run of 3):
when a rebalance's table recovery ends, Faust (faust-streaming 0.15.3, ``Recovery.
on_recovery_completed``) resumes the source partitions *while the fetcher runs*, then seeks
them to their committed offsets, then resumes flow, which clears every stream's queue. Records
fetched between the resume and the clear are dropped from the queues; for a partition with a
committed offset the seek rewinds, so they are fetched again, but aiokafka's
``seek_to_committed`` leaves a partition *without* one (or at 0) where the fetcher left it. Those
records are gone for good: a worker killed before its group's first commit, restarted on a
backlog, skipped 125-300 events per partition while the test watched.

The fix keeps Faust's sequence and completes the seek: flow stops first (so nothing from the old
position is delivered after it: our per-partition Redis marks need each partition in order),
then, in the same call on the consumer's own thread, every assigned non-changelog partition
without a committed offset is reset to its beginning, which is where
``consumer_auto_offset_reset="earliest"`` (our setting) starts it anyway. What the dropped fetch
had delivered is fetched again; the marks make that replay idempotent. Every caller of
``perform_seek`` resumes flow right after it.

The fetch wait: Faust builds its consumer with ``fetch_max_wait_ms=1500``, a constant. One fetch
request per broker is in flight at a time, and it names only the partitions with nothing
buffered, so a fetch for partitions that stay quiet (``model-updates``; the item deltas, which
stop when the user side starves) is held the full 1.5 s while new events wait behind it.
Measured with ``bench/e2e.py`` freshness on the synthetic stream at 1,500 events/s, freshness
was p50 1.9 s, p99 4.1 s (20 ms: 132 / 465 ms; ``bench/results/steps-2026-12-02/fetch-wait-*``);
an independent kafka-python consumer of the same topic saw every event within 50 ms.
``StreamApp.fetch_max_wait_ms`` (``STREAMREC_FETCH_MAX_WAIT_MS``) replaces it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from aiokafka import AIOKafkaConsumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

log = logging.getLogger(__name__)


def partitions_to_rewind(
    committed: Mapping[Any, int | None], changelog_topics: set[str]
) -> list[Any]:
    """Source partitions that ``seek_to_committed`` did not move: no committed offset, or 0.

    >>> from faust.types import TP
    >>> sorted(partitions_to_rewind(
    ...     {TP("ev", 0): 12, TP("ev", 1): None, TP("ev", 2): 0, TP("t-changelog", 0): None},
    ...     {"t-changelog"}))
    [TP(topic='ev', partition=1), TP(topic='ev', partition=2)]
    """
    return [
        tp
        for tp, offset in committed.items()
        if not (offset is not None and offset > 0) and tp.topic not in changelog_topics
    ]


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """The aiokafka consumer thread, with the completed seek and our fetch wait (see the module
    docstring)."""

    def _create_worker_consumer(self, transport: Any) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            # aiokafka hands this to its Fetcher in start(), which has not run yet; there is no
            # public setter, and Faust passes the constant without a setting.
            consumer._fetch_max_wait_ms = int(wait_ms)
        return consumer

    async def seek_to_committed(self) -> Mapping[TP, int]:
        return await self.call_thread(self._seek_to_committed_or_beginning)

    async def _seek_to_committed_or_beginning(self) -> Mapping[TP, int]:
        consumer: AIOKafkaConsumer = self._ensure_consumer()
        committed = await consumer.seek_to_committed()
        if self.app.conf.consumer_auto_offset_reset == "earliest":
            rewind = partitions_to_rewind(committed, self.app.tables.changelog_topics)
            if rewind:
                await consumer.seek_to_beginning(*rewind)
                log.info(
                    "no committed offset, reading from the beginning: %s",
                    ", ".join(f"{tp.topic}:{tp.partition}" for tp in sorted(rewind)),
                )
        return committed


class Consumer(faust_aiokafka.Consumer):
    async def perform_seek(self) -> None:
        """Stop delivering before the seek; every caller resumes flow right after it.

        Without the stop, records fetched from the old position kept arriving while the seek
        ran and after the queues were cleared, ahead of the rewound ones: out of order, which
        our per-partition marks would count as done (seen: 7 events lost in a run).
        """
        self.stop_flow()
        await super().perform_seek()

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    """``kafka://`` as Faust ships it, with :class:`Consumer`."""

    Consumer: ClassVar[type[faust_aiokafka.Consumer]] = Consumer
