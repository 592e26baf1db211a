"""One micro-batch's slow half in a worker thread while the agent prepares the next one.

Why: Faust's ``take_events`` adds nothing to its buffer while the agent body runs, and after the
body it waits up to the batch window for more events. Awaiting the Redis half of a batch
(trending, scoring, the recs' writes) inside the body therefore put *processing + window* on
every batch's path: at half the sustainable rate the worker sat idle a third of the time and
still fell behind. With this stage the window, the next batch's table and Kafka work on the
event loop, and the previous batch's Redis work overlap.

What it must keep: at-least-once delivery and order.

- ``take_events`` acknowledges a batch's messages as soon as the agent asks for the next batch,
  before its submitted work has run. :meth:`InFlight.hold` takes one more reference on each
  message (``Message.incref``), so Faust's acknowledgement does not make the offset committable;
  the stage drops that reference (``Message.ack``) when the batch's work has finished, on the
  event loop, whether it succeeded or not (a failure is logged, as an inline failure was). A
  crash in between replays the batch, and the Redis high-water marks make that idempotent.
- The work runs on one dedicated thread, so batches are written in the order they were taken
  (the high-water marks only move forward).
- At most one batch runs while the next is prepared: :meth:`InFlight.submit` waits for the
  previous one first, so a slow Redis slows the consumer down instead of queueing batches.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)


class InFlight:
    """A one-deep pipeline stage: ``submit`` work for a batch, its messages acked when it ends.

    ``consumer`` returns what ``Message.ack`` needs (the app's consumer), looked up when a batch
    ends.

    Examples
    --------
    >>> import asyncio
    >>> from types import SimpleNamespace
    >>> class Msg(SimpleNamespace):
    ...     def incref(self): self.refs += 1
    ...     def ack(self, consumer): self.refs -= 1
    >>> async def demo():
    ...     stage, msg, done = InFlight(lambda: None, "demo"), Msg(refs=1), []
    ...     held = stage.hold([SimpleNamespace(message=msg)])
    ...     await stage.submit(lambda: done.append("batch 1"), held)
    ...     await stage.drain()
    ...     stage.close()
    ...     return done, msg.refs
    >>> asyncio.run(demo())
    (['batch 1'], 1)
    """

    def __init__(self, consumer: Callable[[], Any], name: str) -> None:
        self._consumer = consumer
        self._name = name
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._running: asyncio.Future[Any] | None = None

    @staticmethod
    def hold(events: Sequence[Any]) -> list[Any]:
        """Take a reference on each event's message (see the module docstring); returns the
        messages, to pass to :meth:`submit`."""
        messages = [event.message for event in events]
        for message in messages:
            message.incref()
        return messages

    async def submit(self, work: Callable[[], Any], held: Sequence[Any]) -> None:
        """Run ``work`` on the stage's thread once the previous batch is done; ``held`` (from
        :meth:`hold`) are released when ``work`` ends."""
        await self.drain()
        loop = asyncio.get_running_loop()
        running = loop.run_in_executor(self._executor, work)
        running.add_done_callback(lambda done: self._release(done, held))
        self._running = running

    async def drain(self) -> None:
        """Wait until the batch in flight (if any) has ended; never raises for its failure."""
        running, self._running = self._running, None
        if running is not None:
            await asyncio.wait([running])

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def _release(self, done: asyncio.Future[Any], held: Sequence[Any]) -> None:
        # A done callback: it runs on the event loop, where Faust's consumer bookkeeping lives.
        if not done.cancelled() and done.exception() is not None:
            log.error(
                "%s failed on a batch of %d events",
                self._name,
                len(held),
                exc_info=done.exception(),
            )
        consumer = self._consumer()
        for message in held:
            message.ack(consumer)
