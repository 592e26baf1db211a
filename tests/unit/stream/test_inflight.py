"""The one-deep pipeline stage of the live path: order, held acknowledgements, failures."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from stream_app.inflight import InFlight


class _Message:
    """What the stage touches of a Faust message: a reference count and ``ack``."""

    def __init__(self) -> None:
        self.refcount = 1  # the reference take_events drops itself
        self.acked_by: list[object] = []

    def incref(self) -> None:
        self.refcount += 1

    def ack(self, consumer: object) -> None:
        self.refcount -= 1
        if self.refcount == 0:
            self.acked_by.append(consumer)


class _Event:
    def __init__(self) -> None:
        self.message = _Message()


def test_messages_stay_unacknowledged_until_their_batch_has_run():
    consumer = object()
    gate = threading.Event()

    async def scenario() -> tuple[list[int], list[int], list[int]]:
        stage = InFlight(lambda: consumer, "test")
        events = [_Event(), _Event()]
        held = stage.hold(events)
        for event in events:  # what take_events does when the agent asks for the next batch
            event.message.refcount -= 1
        await stage.submit(gate.wait, held)
        await asyncio.sleep(0.05)
        while_running = [e.message.refcount for e in events]
        gate.set()
        await stage.drain()
        after = [e.message.refcount for e in events]
        stage.close()
        return while_running, after, [len(e.message.acked_by) for e in events]

    while_running, after, acks = asyncio.run(scenario())
    assert while_running == [1, 1]  # a crash now replays them: nothing committable yet
    assert after == [0, 0] and acks == [1, 1]


def test_batches_run_one_at_a_time_in_submission_order_on_one_thread():
    order: list[tuple[int, str]] = []

    def work(n: int, delay: float):
        def run() -> None:
            time.sleep(delay)
            order.append((n, threading.current_thread().name))

        return run

    async def scenario() -> None:
        stage = InFlight(lambda: None, "order")
        for n, delay in enumerate([0.05, 0.0, 0.02, 0.0]):
            await stage.submit(work(n, delay), stage.hold([_Event()]))
        await stage.drain()
        stage.close()

    asyncio.run(scenario())
    assert [n for n, _ in order] == [0, 1, 2, 3]
    assert len({name for _, name in order}) == 1


def test_submit_waits_for_the_batch_in_flight_before_starting_the_next():
    gate = threading.Event()

    async def scenario() -> bool:
        stage = InFlight(lambda: None, "depth")
        await stage.submit(gate.wait, [])
        second = asyncio.create_task(stage.submit(lambda: None, []))
        await asyncio.sleep(0.05)
        blocked = not second.done()
        gate.set()
        await second
        await stage.drain()
        stage.close()
        return blocked

    assert asyncio.run(scenario())


def test_a_failed_batch_is_logged_and_its_messages_are_still_released(caplog):
    def broken() -> None:
        raise ValueError("bug in a batch")

    async def scenario() -> _Event:
        stage = InFlight(lambda: "consumer", "failing")
        event = _Event()
        event.message.refcount = 0  # take_events already dropped its reference
        await stage.submit(broken, stage.hold([event]))
        await stage.drain()  # never raises for the batch's failure
        stage.close()
        return event

    with caplog.at_level("ERROR"):
        event = asyncio.run(scenario())
    assert event.message.refcount == 0 and event.message.acked_by == ["consumer"]
    assert "failing failed on a batch of 1 events" in caplog.text
    assert "bug in a batch" in caplog.text


@pytest.mark.parametrize("events", [0, 3])
def test_hold_returns_the_messages_it_took_a_reference_on(events):
    batch = [_Event() for _ in range(events)]
    held = InFlight.hold(batch)
    assert held == [e.message for e in batch]
    assert all(e.message.refcount == 2 for e in batch)
