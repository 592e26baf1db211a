"""``/metrics`` exports the rankers' states the way the worker stores them, in the real Redis.

The states are written through ``RedisCache.write_batch`` (the worker's checkpoint path) into a
database claimed for the test, and read back through ``RedisReadStore``'s one ``MGET``.
"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient as AioClient
from aiohttp.test_utils import TestServer as AioServer

from models.online.stream import FEATURES, StreamRanker
from stream_app.api.server import make_app
from stream_app.api.store import RedisReadStore
from stream_app.cache.keys import CacheKeys
from stream_app.cache.redis_backend import RedisCache
from stream_app.cache.telemetry import TelemetryKeys
from stream_app.worker.telemetry import BatchTelemetry, TelemetryRecorder

pytestmark = pytest.mark.integration


def _scrape(url: str, keys: CacheKeys, partitions: int) -> tuple[int, list[str]]:
    async def main() -> tuple[int, list[str]]:
        store = RedisReadStore(url, keys)
        async with AioClient(AioServer(make_app(store, ranker_partitions=partitions))) as client:
            resp = await client.get("/metrics")
            return resp.status, (await resp.text()).splitlines()

    return asyncio.run(main())


def test_metrics_read_every_partitions_ranker_and_skip_a_damaged_one(redis_db: str) -> None:
    keys = CacheKeys()
    learned = StreamRanker(min_trained=1)
    for sign in (1.0, 1.0, -1.0):
        learned.learn([[sign] + [0.0] * (len(FEATURES) - 1)] * 4)
    cache = RedisCache(redis_db, keys)
    try:
        cache.write_batch(
            [],
            60,
            {"events": 3},
            state={
                keys.ranker(0): learned.to_json(),
                keys.ranker(2): b'{"model": "river-logreg-pairwise-v2", "n_learned": ',
            },
        )
        recorder = TelemetryRecorder(cache.client, "w1", TelemetryKeys(keys))
        recorder.record(BatchTelemetry(hits=1, trials=2, rr=0.25, seq_hits=1, seq_trials=1))
    finally:
        cache.close()

    status, lines = _scrape(redis_db, keys, partitions=3)
    assert status == 200 and "streamrec_redis_up 1.0" in lines
    assert 'streamrec_ranker_updates_total{partition="0"} 3.0' in lines
    assert 'streamrec_ranker_pairs_total{partition="0"} 12.0' in lines
    accuracy = f'streamrec_ranker_pairwise_accuracy{{partition="0"}} {learned.pairs_correct / 12}'
    assert accuracy in lines
    loss = next(line for line in lines if line.startswith("streamrec_ranker_log_loss{"))
    assert float(loss.split()[-1]) == pytest.approx(learned.loss_sum / 12)
    ranker_lines = [line for line in lines if line.startswith("streamrec_ranker_")]
    # partition 1 has no state, partition 2's is damaged: neither is exported, neither fails
    assert not [line for line in ranker_lines if 'partition="1"' in line]
    assert not [line for line in ranker_lines if 'partition="2"' in line]
    # the MRR written by HINCRBYFLOAT reads back beside the HitRate
    assert "streamrec_online_mrr_at_10_cached 0.125" in lines
    assert "streamrec_online_hit_rate_at_10_cached 0.5" in lines
