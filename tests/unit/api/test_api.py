"""The read API's routes, validation and error sorting, over an in-memory fake store.

The app runs in aiohttp's in-process test server (loopback only); no Redis is involved. The
fake store and ``call`` are in this folder's conftest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from aiohttp.test_utils import TestClient as AioClient

from models.online.stream import StreamRanker
from stream_app.api.dashboard import SAMPLER_KEY
from stream_app.api.health import HealthPolicy
from stream_app.api.sampler import Sample
from stream_app.api.server import UNKNOWN_USER_REASON
from stream_app.cache.base import Recommendation, UserRecs

#: ``call(store, scenario, partitions=0, **make_app_options)``, from the conftest
Call = Callable[..., Any]


def ranker_state(updates: int, pairs: int, correct: int, loss: float, learn_s: float) -> bytes:
    """A stored ranker state with these counters, written by the worker's own ``to_json``."""
    ranker = StreamRanker()
    ranker.reranker.n_learned = updates
    ranker.n_pairs = pairs
    ranker.pairs_correct = correct
    ranker.loss_sum = loss
    ranker.learn_s = learn_s
    return ranker.to_json()


async def get_json(client: AioClient, path: str) -> tuple[int, Any]:
    resp = await client.get(path)
    return resp.status, await resp.json()


def test_cached_user_gets_top_n_with_versions_and_computed_at(store: Any, call: Call) -> None:
    status, body = call(store, lambda c: get_json(c, "/recommendations/u1?n=5"))
    assert status == 200
    assert body["source"] == "cache"
    assert [i["item_id"] for i in body["items"]] == ["i0", "i1", "i2", "i3", "i4"]
    assert body["items"][1] == {"item_id": "i1", "score": 0.5, "reason": "people like you"}
    assert body["model_versions"] == {"cf": "cf-v3", "session": "s-7"}
    assert body["computed_at"] == 1_700_000_000_000
    assert body["recent"] == ["h1", "h2", "h3"]  # the history it came from, oldest first


def test_default_n_is_ten(store: Any, call: Call) -> None:
    status, body = call(store, lambda c: get_json(c, "/recommendations/u1"))
    assert status == 200 and len(body["items"]) == 10


def test_unknown_user_gets_trending_with_a_reason_that_says_so(store: Any, call: Call) -> None:
    status, body = call(store, lambda c: get_json(c, "/recommendations/nobody?n=2"))
    assert status == 200
    assert body["source"] == "trending"
    assert [i["item_id"] for i in body["items"]] == ["t1", "t2"]
    assert {i["reason"] for i in body["items"]} == {UNKNOWN_USER_REASON}
    assert body["recent"] == []


def test_bad_n_is_a_json_400(store: Any, call: Call) -> None:
    for bad in ("0", "101", "ten", "-3", "2.5"):
        status, body = call(store, lambda c, b=bad: get_json(c, f"/recommendations/u1?n={b}"))
        assert status == 400, bad
        assert body["error"] == "bad_request" and "between 1 and 100" in body["detail"]
    status, _ = call(store, lambda c: get_json(c, "/similar/i1?n=1000"))
    assert status == 400


def test_similar_items_and_404_for_unknown_item(store: Any, call: Call) -> None:
    status, body = call(store, lambda c: get_json(c, "/similar/i1?n=1"))
    assert status == 200 and body == {"item_id": "i1", "items": [{"item_id": "i2", "score": 0.9}]}
    status, body = call(store, lambda c: get_json(c, "/similar/zzz"))
    assert status == 404 and body["error"] == "not_found"


def test_redis_down_gives_503_not_a_crash(store: Any, call: Call) -> None:
    store.down = True
    for path in ("/recommendations/u1", "/similar/i1"):
        status, body = call(store, lambda c, p=path: get_json(c, p))
        assert status == 503, path
        assert body["error"] == "unavailable"
    status, body = call(store, lambda c: get_json(c, "/health"))
    assert status == 503 and body["redis"] == "down"


def test_health_reports_redis_and_serving_versions(store: Any, call: Call) -> None:
    status, body = call(store, lambda c: get_json(c, "/health"))
    assert status == 200
    assert 0 <= body.pop("last_worker_report_ms_ago") < 60_000
    assert body == {
        "status": "ok",
        "reasons": [],
        "redis": "up",
        "workers": 1,
        "model_versions": {"session": ["s-7"]},
    }


def test_health_is_degraded_when_no_worker_reported_lately(store: Any, call: Call) -> None:
    now_ms = int(time.time() * 1000)
    store.snap = replace(store.snap, workers_seen_ms={"w1": now_ms - 45_000})
    policy = HealthPolicy(worker_stale_s=30)
    status, body = call(store, lambda c: get_json(c, "/health"), health_policy=policy)
    assert status == 503 and body["status"] == "degraded"
    assert body["reasons"][0].startswith("no worker has reported for 4")
    store.snap = replace(store.snap, workers={}, workers_seen_ms={})
    status, body = call(store, lambda c: get_json(c, "/health"))
    assert (status, body["reasons"]) == (503, ["no worker has reported"])


def test_health_is_degraded_while_the_lag_only_grows(store: Any, call: Call) -> None:
    async def with_lag(client: AioClient, lags: list[int]) -> tuple[int, Any]:
        sampler = client.app[SAMPLER_KEY]
        while not sampler.samples:  # its own first reading (no lag probe: no lag) comes first
            await asyncio.sleep(0.01)
        now_ms = int(time.time() * 1000)
        for k, lag in enumerate(lags):  # one reading every 15 s up to now
            sampler.record(Sample(now_ms - (len(lags) - 1 - k) * 15_000, True, lag_total=lag))
        return await get_json(client, "/health")

    options = {"sampling": True, "sample_s": 300.0, "window_s": 3600.0}  # room for 13
    status, body = call(store, lambda c: with_lag(c, [10, 400, 400, 900, 2_000]), **options)
    assert status == 503 and body["reasons"] == ["consumer lag grew at every reading for 60 s"]
    status, body = call(store, lambda c: with_lag(c, [10, 400, 30, 900, 2_000]), **options)
    assert status == 200 and body["status"] == "ok"  # it fell once: the group keeps up


async def get_text(client: AioClient, path: str) -> tuple[int, str, str]:
    resp = await client.get(path)
    return resp.status, resp.headers["Content-Type"], await resp.text()


def test_metrics_are_prometheus_text(store: Any, call: Call) -> None:
    status, ctype, text = call(store, lambda c: get_text(c, "/metrics"))
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    lines = set(text.splitlines())
    assert "streamrec_events_total 10.0" in lines
    assert "streamrec_dlq_total 1.0" in lines
    # The headline rate is the sequential one (seq_hits / seq_trials), the cached one beside it.
    assert "streamrec_online_hit_rate_at_10 0.4" in lines
    assert "streamrec_online_hit_rate_at_10_cached 0.3" in lines
    assert "streamrec_online_seq_hits_total 2.0" in lines
    assert "streamrec_online_seq_trials_total 5.0" in lines
    assert "streamrec_online_hits_total 3.0" in lines
    assert "streamrec_online_trials_total 10.0" in lines
    # MRR@10 beside each HitRate, over the same trials
    assert "streamrec_online_mrr_at_10 0.25" in lines
    assert "streamrec_online_mrr_at_10_cached 0.15" in lines
    assert "streamrec_online_seq_rr_total 1.25" in lines
    assert "streamrec_online_rr_total 1.5" in lines
    assert 'streamrec_model_version{model="session",version="s-7"} 1.0' in lines
    assert "streamrec_redis_up 1.0" in lines
    assert not any(line.startswith("streamrec_ranker_") for line in lines)  # no partitions


def test_metrics_export_each_partitions_ranker_and_skip_what_they_cannot_read(
    store: Any, call: Call
) -> None:
    store.ranker_raw = {
        0: ranker_state(100, 400, 300, 200.0, 0.05),
        # 1: nothing stored yet
        2: b'{"n_learned": 5, "n_pairs": "many"',  # damaged
        3: ranker_state(2, 0, 0, 0.0, 0.001),  # learned, but no pairs yet
        4: ranker_state(9, 9, 9, 1.0, 0.0),  # beyond the partitions asked for
    }
    status, _, text = call(store, lambda c: get_text(c, "/metrics"), partitions=4)
    assert status == 200
    assert store.ranker_reads == [[0, 1, 2, 3]]  # one read for partitions 0..3
    lines = set(text.splitlines())
    assert 'streamrec_ranker_updates_total{partition="0"} 100.0' in lines
    assert 'streamrec_ranker_pairs_total{partition="0"} 400.0' in lines
    assert 'streamrec_ranker_pairwise_accuracy{partition="0"} 0.75' in lines
    assert 'streamrec_ranker_log_loss{partition="0"} 0.5' in lines
    assert 'streamrec_ranker_learn_cpu_seconds_per_update{partition="0"} 0.0005' in lines
    assert 'streamrec_ranker_learn_cpu_seconds_total{partition="0"} 0.05' in lines
    assert 'streamrec_ranker_updates_total{partition="3"} 2.0' in lines
    ranker_lines = [line for line in lines if line.startswith("streamrec_ranker_")]
    assert not [line for line in ranker_lines if 'partition="1"' in line or 'partition="2"' in line]
    assert not [line for line in ranker_lines if 'partition="4"' in line]
    # a ratio without a denominator has no sample rather than a made-up 0
    assert not any(
        "accuracy" in line or "log_loss" in line for line in ranker_lines if '"3"' in line
    )
    assert "streamrec_events_total 10.0" in lines  # the rest of the scrape is there


def test_metrics_without_ranker_states_still_scrape(store: Any, call: Call) -> None:
    store.rankers_down = True
    store.ranker_raw = {0: ranker_state(1, 1, 1, 0.1, 0.0)}
    status, _, text = call(store, lambda c: get_text(c, "/metrics"), partitions=2)
    lines = text.splitlines()
    assert status == 200 and "streamrec_redis_up 1.0" in lines
    assert "streamrec_online_hit_rate_at_10 0.4" in lines
    assert not any(line.startswith("streamrec_ranker_") for line in lines)


def test_metrics_with_redis_down_still_scrape_with_redis_up_zero(store: Any, call: Call) -> None:
    store.down = True
    status, _, text = call(store, lambda c: get_text(c, "/metrics"))
    assert status == 200
    assert "streamrec_redis_up 0.0" in text.splitlines()
    assert "streamrec_events_total" not in text


def test_unknown_route_is_json_404_and_store_closed_on_shutdown(store: Any, call: Call) -> None:
    status, body = call(store, lambda c: get_json(c, "/nope"))
    assert status == 404 and body["error"] == "not_found"
    assert store.closed


def test_unexpected_error_is_json_500_and_server_keeps_serving(store: Any, call: Call) -> None:

    async def boom(user_id: str) -> None:
        raise KeyError("bug")

    store.get_recs = boom  # type: ignore[method-assign]

    async def scenario(client: AioClient) -> tuple[int, Any, int]:
        first = await client.get("/recommendations/u1")
        after = await client.get("/similar/i1")
        return first.status, await first.json(), after.status

    status, body, after = call(store, scenario)
    assert status == 500 and body["error"] == "internal"
    assert after == 200


def test_stored_recs_and_api_items_have_one_json_shape(store: Any, call: Call) -> None:
    """What the worker stores (``UserRecs.to_json``) and what the API serves
    (``Recommendation.to_json_dict``) are the same item objects, scores rounded to 6 places."""
    import orjson

    recs = UserRecs(
        "u1",
        (Recommendation("i1", 0.123456789, "because you viewed i0"), Recommendation("i2", 2, "r")),
    )
    stored = orjson.loads(recs.to_json())["items"]
    assert stored == [r.to_json_dict() for r in recs.items]
    assert stored[0] == {"item_id": "i1", "score": 0.123457, "reason": "because you viewed i0"}
