"""The worker's Faust app: our transport (completed seek, our fetch wait), our batch size."""

from __future__ import annotations

import asyncio

from faust.types import TP

from stream_app.kafka import transport as kafka_transport
from stream_app.settings import Settings
from stream_app.worker.app import create_app


def test_the_app_consumes_through_the_completed_seek() -> None:
    app = create_app(Settings(app_id="unit-transport"))
    assert isinstance(app.transport, kafka_transport.Transport)
    assert app.transport.Consumer is kafka_transport.Consumer
    assert app.conf.consumer_auto_offset_reset == "earliest"  # what the rewind restores


def test_only_uncommitted_source_partitions_are_rewound() -> None:
    committed = {
        TP("events", 0): 125,  # seek_to_committed moved it: left alone
        TP("events", 1): None,  # never committed: where a dropped fetch left it
        TP("events", 2): 0,  # aiokafka does not seek to 0 either
        TP("app-history-changelog", 0): None,  # recovery owns changelog positions
        TP("app-item-deltas", 3): None,
    }
    rewind = kafka_transport.partitions_to_rewind(committed, {"app-history-changelog"})
    assert sorted(rewind) == [TP("app-item-deltas", 3), TP("events", 1), TP("events", 2)]


def test_the_worker_consumer_waits_for_fetches_as_configured() -> None:
    import asyncio
    import inspect

    from aiokafka import AIOKafkaConsumer

    app = create_app(Settings(app_id="unit-fetch-wait", fetch_max_wait_ms=35))
    thread = kafka_transport.ConsumerThread(app.consumer, loop=None, beacon=None)

    async def build() -> AIOKafkaConsumer:  # aiokafka wants a running loop to be built
        return thread._create_worker_consumer(app.transport)

    consumer = asyncio.run(build())
    assert consumer._fetch_max_wait_ms == 35  # Faust's constant would be 1500
    # ... and aiokafka still builds its Fetcher from that attribute when the consumer starts
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(AIOKafkaConsumer.start)


def test_the_worker_producer_batches_table_rows_in_256_kib() -> None:
    from stream_app.worker.app import PRODUCER_BATCH_BYTES

    app = create_app(Settings(app_id="unit-producer-batch"))
    assert app.conf.producer_max_batch_size == PRODUCER_BATCH_BYTES == 256 * 1024
    # a batch must fit in one request
    assert app.conf.producer_max_request_size >= PRODUCER_BATCH_BYTES


def test_the_worker_runs_without_faust_s_monitor_sensor_but_keeps_the_monitor() -> None:
    app = create_app(Settings(app_id="unit-no-monitor"))
    monitor = app.monitor
    app.on_init_dependencies()
    assert monitor not in set(app.sensors)
    # the consumer still reports to the monitor directly (end offsets, commits)
    assert app.monitor is monitor


# --------------------------------------------------------------- the fetcher's per-message race


def _counting_tasks(loop) -> list:
    """Install a task factory on ``loop`` that records every task created; returns the list."""
    import asyncio

    created: list = []

    def factory(loop, coro, **kwargs):
        task = asyncio.Task(coro, loop=loop, **kwargs)
        created.append(task)
        return task

    loop.set_task_factory(factory)
    return created


def test_a_delivery_that_does_not_wait_runs_at_once_without_tasks() -> None:
    import asyncio

    async def scenario() -> None:
        consumer = create_app(Settings(app_id="unit-eager")).consumer
        created = _counting_tasks(asyncio.get_running_loop())
        delivered: list[str] = []

        async def deliver() -> str:
            delivered.append("m1")
            return "done"

        result = await consumer.wait_first(deliver(), consumer.suspend_flow.wait())
        assert delivered == ["m1"]
        assert result.results == ["done"] and not result.stopped
        assert created == []  # Service.wait_first would have made four

    asyncio.run(scenario())


def test_a_delivery_that_waits_finishes_through_the_race() -> None:
    import asyncio

    async def scenario() -> None:
        consumer = create_app(Settings(app_id="unit-eager-wait")).consumer
        loop = asyncio.get_running_loop()
        created = _counting_tasks(loop)
        room = loop.create_future()  # e.g. a full stream queue getting room
        delivered: list[str] = []

        async def deliver() -> str:
            delivered.append(await room)
            await asyncio.sleep(0)  # a bare yield on the way
            return "done"

        loop.call_later(0.01, room.set_result, "m1")
        result = await consumer.wait_first(deliver(), consumer.suspend_flow.wait())
        assert delivered == ["m1"]
        assert "done" in result.results and not result.stopped
        assert created  # raced as before

    asyncio.run(scenario())


def test_a_waiting_delivery_is_abandoned_when_flow_stops_as_faust_does() -> None:
    import asyncio

    async def scenario() -> None:
        consumer = create_app(Settings(app_id="unit-eager-stop")).consumer
        loop = asyncio.get_running_loop()
        room = loop.create_future()
        seen: list[str] = []

        async def deliver() -> None:
            try:
                seen.append(await room)
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise

        race = asyncio.ensure_future(consumer.wait_first(deliver(), consumer.suspend_flow.wait()))
        await asyncio.sleep(0.01)
        consumer.stop_flow()  # a rebalance: sets suspend_flow
        result = await race
        await asyncio.sleep(0)  # let the cancelled delivery run its handler
        assert seen == ["cancelled"] and room.cancelled()
        assert result.results == [True]  # won by the flow stop's Event.wait

    asyncio.run(scenario())


def test_other_waits_and_a_stopped_flow_keep_the_plain_race() -> None:
    import asyncio

    async def scenario() -> None:
        consumer = create_app(Settings(app_id="unit-eager-plain")).consumer
        created = _counting_tasks(asyncio.get_running_loop())

        async def deliver() -> str:
            return "done"

        consumer.stop_flow()  # flow already stopped: Faust's race decides, as before
        await consumer.wait_first(deliver(), consumer.suspend_flow.wait())
        assert created
        created.clear()
        consumer.resume_flow()
        other = asyncio.Event()
        other.set()
        await consumer.wait_first(deliver(), other.wait())  # not the fetcher's call
        assert created

    asyncio.run(scenario())


def test_a_delivery_that_raises_propagates_like_the_plain_race() -> None:
    import asyncio

    import pytest

    async def scenario() -> None:
        consumer = create_app(Settings(app_id="unit-eager-raise")).consumer

        async def deliver() -> None:
            raise ValueError("bad message")

        with pytest.raises(ValueError, match="bad message"):
            await consumer.wait_first(deliver(), consumer.suspend_flow.wait())

    asyncio.run(scenario())


def test_resumed_hands_a_failed_future_to_the_coroutine_at_its_await() -> None:
    import asyncio

    async def scenario() -> str:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        async def body() -> str:
            try:
                await fut
            except KeyError:
                return "caught at the await"
            return "not reached"

        coro = body()
        first = coro.send(None)
        assert first is fut
        loop.call_soon(fut.set_exception, KeyError("x"))
        return await kafka_transport.resumed(coro, first)

    assert asyncio.run(scenario()) == "caught at the await"


def test_the_producer_buffer_counts_its_pending_sends_without_the_settings() -> None:
    async def scenario() -> list[int]:
        app = create_app(Settings(app_id="unit-buffer"))
        buffer = app.producer.buffer
        assert isinstance(buffer, kafka_transport.UnthreadedBuffer)
        sizes = [buffer.size]
        for _ in range(3):
            buffer.pending.put_nowait(object())
            sizes.append(buffer.size)
        buffer.pending.get_nowait()
        sizes.append(buffer.size)
        return sizes

    assert asyncio.run(scenario()) == [0, 1, 2, 3, 2]
