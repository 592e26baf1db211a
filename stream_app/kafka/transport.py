"""Faust's aiokafka transport with two fixes and two shortcuts: uncommitted source partitions
restart from the start, the fetch wait is ours to set, a message handed to its stream without
waiting costs no asyncio tasks, and the producer buffer's size costs no settings lookup.

Why each exists (a SIGKILL recovery test lost events in about 1 run of 3 before the first fix;
a quiet partition held every fetch 1.5 s before the second; four tasks per message before the
third): docs/stream.md, "The Kafka transport".
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Coroutine, Mapping
from typing import Any, ClassVar

from aiokafka import AIOKafkaConsumer
from faust.transport import producer as faust_producer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode.services import WaitResults

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


async def resumed(coro: Coroutine[Any, Any, Any], waiting_on: Any) -> Any:
    """Drive ``coro`` to its end from where its first step stopped (``waiting_on``: what that
    step yielded, a future or None for a bare yield), as an asyncio Task steps a coroutine.

    After the awaited future is done (or failed, or cancelled) the coroutine is resumed with
    ``send(None)``, so it sees the outcome at its own ``await``; a cancellation of this task
    while it waits cancels that future first, and reaches the coroutine the same way.

    >>> async def two_steps(fut):
    ...     return await fut + 1
    >>> async def demo():
    ...     fut = asyncio.get_running_loop().create_future()
    ...     coro = two_steps(fut)
    ...     first = coro.send(None)            # stops at ``await fut``: yields fut
    ...     asyncio.get_running_loop().call_soon(fut.set_result, 41)
    ...     return await resumed(coro, first)
    >>> asyncio.run(demo())
    42
    """
    while True:
        try:
            if waiting_on is None:
                await asyncio.sleep(0)
            else:
                # The receiver of a yielded future clears its flag, as Task.__step does
                # (awaiting it again with the flag set raises "await wasn't used with future").
                waiting_on._asyncio_future_blocking = False
                await waiting_on
        except BaseException as exc:
            if waiting_on is None or not waiting_on.done():
                # Cancelled while on a bare yield (or the future refused to cancel): hand the
                # cancellation in, as Task.__step does.
                try:
                    waiting_on = coro.throw(exc)
                except StopIteration as done:
                    return done.value
                continue
        try:
            waiting_on = coro.send(None)
        except StopIteration as done:
            return done.value


def waits_on(coro: object, event: asyncio.Event) -> bool:
    """Whether ``coro`` is an unstarted ``event.wait()``.

    >>> ev = asyncio.Event()
    >>> c = ev.wait(); waits_on(c, ev), waits_on(c, asyncio.Event()); c.close()
    (True, False)
    """
    return inspect.iscoroutine(coro) and inspect.getcoroutinelocals(coro).get("self") is event


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

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
        """The fetcher's per-message race, with the delivery's first step run at once.

        Only the fetcher's call (a delivery coroutine and an unstarted ``suspend_flow.wait()``,
        no timeout, flow running, consumer neither stopping nor crashed) takes the shortcut;
        every other call, and a delivery that suspends, goes through ``Service.wait_first``.
        The fetcher ignores the result; it is what ``Service.wait_first`` would return.
        """
        if not self._eager_delivery(coros, timeout):
            return await super().wait_first(*coros, timeout=timeout)
        delivery, flow_stopped = coros
        try:
            waiting_on = delivery.send(None)
        except StopIteration as done:
            flow_stopped.close()
            return WaitResults([delivery], [done.value], False)
        except BaseException:
            flow_stopped.close()
            raise
        return await super().wait_first(resumed(delivery, waiting_on), flow_stopped)

    def _eager_delivery(self, coros: tuple[Any, ...], timeout: Any) -> bool:
        return (
            timeout is None
            and len(coros) == 2
            and inspect.iscoroutine(coros[0])
            and waits_on(coros[1], self.suspend_flow)
            and not self.suspend_flow.is_set()
            and not self.should_stop
            and not self._crashed.is_set()
        )

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class UnthreadedBuffer(faust_producer.ProducerBuffer):
    """Faust's producer buffer when ``producer_threaded`` is off (ours): its size is the
    pending queue's length. Faust's conductor asks for the size once per delivered message,
    and Faust's property looked ``producer_threaded`` up in the app's settings each time
    (1.4% of the worker's CPU on the 1M-event stream)."""

    @property
    def size(self) -> int:
        return self.pending.qsize()


class Producer(faust_aiokafka.Producer):
    """Faust's aiokafka producer with :class:`UnthreadedBuffer` where it applies."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.app.conf.producer_threaded:
            self.buffer.__class__ = UnthreadedBuffer


class Transport(faust_aiokafka.Transport):
    """``kafka://`` as Faust ships it, with our :class:`Consumer` and :class:`Producer`."""

    Consumer: ClassVar[type[faust_aiokafka.Consumer]] = Consumer
    Producer: ClassVar[type[faust_aiokafka.Producer]] = Producer
