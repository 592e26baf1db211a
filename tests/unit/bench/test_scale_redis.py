"""bench/scale.py on a Redis Cluster: which keys a run's clean-up takes, and what workers get.

A cluster has database 0 only, so a run is kept apart by its key prefix; its clean-up must take
every key of that prefix (plain and hash-tagged) on every master, and nothing of a demo's or of
another run's whose prefix merely starts like it.
"""

from __future__ import annotations

import fnmatch
import importlib
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from stream_app.cache.keys import CacheKeys
from stream_app.settings import Settings

ROOT = Path(__file__).resolve().parents[3]


def _load(name: str) -> ModuleType:
    """A bench script as the module its siblings import it as (scale.py does ``import e2e``,
    so the tests and scale.py share one ``e2e.Run``)."""
    if str(ROOT / "bench") not in sys.path:
        sys.path.insert(0, str(ROOT / "bench"))
    return importlib.import_module(name)


e2e = _load("e2e")
scale = _load("scale")


class FakeNode:
    """One master's keyspace: SCAN MATCH (Redis' glob has no special braces, nor fnmatch's)."""

    def __init__(self, keys: set[str]) -> None:
        self.keys = set(keys)
        self.pending: list[str] = []

    def scan_iter(self, match: str, count: int) -> list[bytes]:
        return [k.encode() for k in sorted(self.keys) if fnmatch.fnmatchcase(k, match)]

    def pipeline(self, transaction: bool) -> FakeNode:
        assert transaction is False  # a MULTI over several slots would be refused
        return self

    def delete(self, key: bytes) -> None:
        self.pending.append(key.decode())

    def execute(self) -> list[int]:
        done = [int(k in self.keys) for k in self.pending]
        self.keys -= set(self.pending)
        self.pending = []
        return done


class FakeCluster:
    def __init__(self, *nodes: FakeNode) -> None:
        self.nodes = nodes

    def get_primaries(self) -> tuple[FakeNode, ...]:
        return self.nodes

    def get_redis_connection(self, node: FakeNode) -> Any:
        return node


def test_the_clean_up_takes_the_run_prefix_on_every_master_and_nothing_else() -> None:
    prefix = scale.run_prefix("scale-1")
    mine = CacheKeys(prefix, cluster=True)
    kept = {
        "streamrec:v1:recs:u1",  # the demo's product prefix
        "{streamrec:v1}:stats:events",
        f"{prefix}0:recs:u1",  # another run whose prefix starts like this one
        f"x{prefix}:recs:u1",  # would match a *prefix* pattern
    }
    a = FakeNode({mine.recs("u1"), mine.stat("events"), mine.trending, *kept})
    b = FakeNode({mine.recs("u2"), mine.neighbors("i9"), "streamrec:v1:recs:u2"})
    deleted = e2e.delete_prefix(FakeCluster(a, b), prefix, batch=2)
    assert deleted == 5
    assert a.keys == kept and b.keys == {"streamrec:v1:recs:u2"}


def test_the_run_prefix_is_one_the_workers_accept() -> None:
    prefix = scale.run_prefix("scale-20260101T000000-abc123")
    env = {"STREAMREC_REDIS_KEY_PREFIX": prefix, "STREAMREC_REDIS_URL": "redis+cluster://h:7100"}
    settings = Settings.from_env(env)
    keys = CacheKeys.for_settings(settings)
    assert keys.stat("events") == f"{{{prefix}}}:stats:events"
    assert all(pattern.endswith(":*") for pattern in e2e.run_key_patterns(prefix))


def _run(settings: Settings, tmp_path: Path) -> Any:
    return e2e.Run(settings, "r1", 13, tmp_path, [], "synthetic")


def test_workers_get_the_run_database_or_on_a_cluster_the_run_prefix(tmp_path: Path) -> None:
    single = _run(Settings(redis_url="redis://127.0.0.1:6379/0"), tmp_path)
    assert single.redis_env() == {"STREAMREC_REDIS_URL": "redis://127.0.0.1:6379/13"}
    cluster = Settings(redis_url="redis+cluster://127.0.0.1:7100")
    run = _run(replace(cluster, redis_key_prefix=scale.run_prefix("r1")), tmp_path)
    assert run.redis_env() == {
        "STREAMREC_REDIS_URL": "redis+cluster://127.0.0.1:7100",
        "STREAMREC_REDIS_KEY_PREFIX": "streamrec-bench:r1:v1",
    }


def test_a_database_is_not_reserved_on_a_cluster() -> None:
    settings = Settings(redis_url="redis+cluster://127.0.0.1:7100")
    with pytest.raises(RuntimeError, match="database 0 only"):
        e2e.reserve_db(settings, 12, "r1", ttl_s=60)


def test_scale_json_names_the_redis() -> None:
    assert scale.redis_label(False) == "single"
    assert scale.redis_label(True, 3, 3) == "cluster (3 masters, 3 replicas)"
    assert scale.describe_redis(Settings()) == "single"  # no connection for a single Redis
