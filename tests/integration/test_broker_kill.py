"""The Kafka broker SIGKILLed under a running worker and restarted (issue 20, scenario 2, small
enough for ``make test``), on a broker of the test's own (``infra/stack.sh`` on other ports).

The worker is not restarted by hand: its consumer, producers and group membership reconnect
once the broker is back (aiokafka retries; the changelog and delta sends are retried too), the
producer's unacknowledged sends are retried, every event is counted exactly once and the
group's committed lag returns to 0."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace

import pytest
import redis

from stream_app.cache import CacheKeys
from stream_app.kafka.admin import consumer_lag, ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SEED, N_EVENTS = 31, 2000
#: How long the broker stays dead (scenario 2 of ``make chaos`` uses 10 s).
OUTAGE_S = 5


def _events(client: redis.Redis, keys: CacheKeys) -> int:
    return int(client.get(keys.stat("events")) or 0)


def _lag(settings) -> int | None:
    from kafka.admin import KafkaAdminClient

    try:
        admin = KafkaAdminClient(bootstrap_servers=[settings.kafka_bootstrap])
    except Exception:  # the broker is still starting: unknown
        return None
    try:
        return consumer_lag(admin, settings.app_id, settings.topic_events)
    finally:
        admin.close()


def test_broker_killed_and_restarted_under_the_worker_loses_nothing(
    settings, private_stack, start_worker, wait_for, env_for
):
    settings = replace(
        settings, kafka_bootstrap=private_stack.bootstrap, redis_url=private_stack.redis_url
    )
    ensure_topics(settings)
    client = redis.Redis.from_url(settings.redis_url)
    keys = CacheKeys(settings.redis_key_prefix)
    worker = start_worker(settings)
    wait_for(lambda: client.exists(keys.generation), 120, "the worker's start", worker.log_tail)
    producer = subprocess.Popen(
        [sys.executable, "-m", "stream_app.cli", "produce", "--no-progress", "--seed", str(SEED),
         "--generate", str(N_EVENTS), "--rate", "300"],
        env=env_for(settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    wait_for(lambda: _events(client, keys) >= 500, 120, "500 events counted", worker.log_tail)
    private_stack.kill("kafka")
    time.sleep(OUTAGE_S)
    worker.assert_alive()
    private_stack.stack("up")  # the broker again, with its log: acknowledged events are kept
    out, _ = producer.communicate(timeout=180)
    assert producer.returncode == 0 and f"produced {N_EVENTS} events" in out, out
    wait_for(
        lambda: _events(client, keys) >= N_EVENTS,
        180,
        f"all {N_EVENTS} events counted after the broker came back",
        lambda: f"events={_events(client, keys)}\n{worker.stacks()}",
    )
    wait_for(lambda: _lag(settings) == 0, 120, "the group's lag to return to 0", worker.log_tail)
    assert _events(client, keys) == N_EVENTS  # none lost, none counted twice
    worker.assert_alive()  # the same process throughout
    assert worker.stop() == 0, worker.log_tail()
