"""A Redis Cluster master SIGKILLed under a running worker (real Faust worker, real Kafka).

The master killed is the one serving the shared hash tag's slot (trending, marks, counters)
and a third of the users' lists. Its replica is promoted (``cluster-node-timeout``), the
cluster client finds it, and the worker goes on writing without a restart: every event is
counted, and every user's list is there at the end. The node comes back as a replica
(``infra/redis_cluster.sh up``) so the next test finds the cluster whole.
"""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from typing import Any

import pytest
import redis

from models.datasets import load_dataset
from stream_app.cache import CacheKeys
from stream_app.cache.connect import connect_redis, mget
from stream_app.cache.slots import slot_of
from stream_app.kafka.admin import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

SEED, N_EVENTS, RATE = 41, 3000, 300


def _events(client: Any, keys: CacheKeys) -> int:
    try:
        return int(client.get(keys.stat("events")) or 0)
    except (redis.RedisError, redis.exceptions.RedisClusterException):
        return -1  # failing over: unknown


def _master_of(slot: int, port: int) -> tuple[int, int] | None:
    """(port, PID) of the live master that ``port``'s node says serves ``slot``, or None."""
    try:
        node = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
        lines = node.execute_command("CLUSTER", "NODES").decode().splitlines()
        for line in lines:
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for span in fields[8:]:
                low, _, high = span.partition("-")
                if span[0] != "[" and int(low) <= slot <= int(high or low):
                    master_port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
                    info = redis.Redis(host="127.0.0.1", port=master_port, socket_timeout=2)
                    return master_port, int(info.info("server")["process_id"])
    except redis.RedisError:
        return None
    return None


def test_a_master_killed_mid_stream_fails_over_and_no_list_is_lost(
    settings, redis_cluster, redis_cluster_admin, start_worker, wait_for, env_for, producing
):
    admin = redis_cluster_admin
    settings = replace(settings, redis_url=redis_cluster)
    keys = CacheKeys.for_settings(settings)
    # The worker's prefix is the product's own: keys a run before left behind go first.
    admin.clear(redis_cluster, settings.redis_key_prefix)
    ensure_topics(settings)
    client: Any = connect_redis(redis_cluster, socket_timeout=2)
    worker = start_worker(settings)
    try:
        wait_for(lambda: _events(client, keys) >= 0 and client.exists(keys.generation), 120,
                 "the worker's start", worker.log_tail)  # fmt: skip
        producer = producing(
            env_for(settings), "--seed", str(SEED), "--generate", str(N_EVENTS), "--rate", str(RATE)
        )
        wait_for(lambda: _events(client, keys) >= 600, 120, "600 events counted", worker.log_tail)
        shared = slot_of(keys.trending)
        killed = _master_of(shared, admin.port)
        assert killed is not None, "no master serves the shared slot"
        os.kill(killed[1], signal.SIGKILL)
        survivor = admin.port + 1 if killed[0] == admin.port else admin.port
        wait_for(
            lambda: (m := _master_of(shared, survivor)) is not None and m[0] != killed[0],
            60,
            f"a replica promoted in place of the master on port {killed[0]}",
            worker.log_tail,
        )
        at_failover = _events(client, keys)
        out, _ = producer.communicate(timeout=180)
        assert producer.returncode == 0 and f"produced {N_EVENTS} events" in out, out
        wait_for(
            lambda: _events(client, keys) >= N_EVENTS,
            180,
            f"all {N_EVENTS} events counted after the failover",
            lambda: f"events={_events(client, keys)}\n{worker.stacks()}",
        )
        # Not "== N_EVENTS": a batch's MULTI the dead master acknowledged but had not yet sent
        # to its replica is lost with its counts (asynchronous replication, docs/deploy.md).
        assert at_failover < N_EVENTS  # the worker wrote after the failover, not only before
        worker.assert_alive()  # the same process throughout
        users = sorted({e.user_id for e in load_dataset("synthetic", synthetic_events=N_EVENTS,
                                                         seed=SEED).events})  # fmt: skip
        lists = mget(client, [keys.recs(u) for u in users])
        missing = [u for u, raw in zip(users, lists, strict=True) if raw is None]
        assert not missing, f"{len(missing)} of {len(users)} users' lists lost: {missing[:10]}"
        assert worker.stop() == 0, worker.log_tail()
    finally:
        client.close()
        admin.up()  # the killed node back, as a replica
        admin.clear(redis_cluster, settings.redis_key_prefix)
