"""The worker's Faust app: our transport (completed seek, our fetch wait), our batch size."""

from __future__ import annotations

from faust.types import TP

from stream_app import kafka_transport
from stream_app.app import create_app
from stream_app.settings import Settings


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
    from stream_app.app import PRODUCER_BATCH_BYTES

    app = create_app(Settings(app_id="unit-producer-batch"))
    assert app.conf.producer_max_batch_size == PRODUCER_BATCH_BYTES == 256 * 1024
    # a batch must fit in one request
    assert app.conf.producer_max_request_size >= PRODUCER_BATCH_BYTES
