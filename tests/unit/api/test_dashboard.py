"""The dashboard's routes over the in-memory store: the page and its files, the state (its
figures against ``/metrics`` for the same snapshot), the item lookup, id limits and Redis down.
"""

from __future__ import annotations

import asyncio
import html.parser
import logging
import math
import re
from collections.abc import Callable
from importlib import resources
from typing import Any

import pytest
from aiohttp.test_utils import TestClient as AioClient

Call = Callable[..., Any]

#: Ids a browser test relies on; the figures among them carry ``data-value``.
FIGURE_IDS = (
    "events-total",
    "dlq-total",
    "hit-rate-seq",
    "hit-rate-cached",
    "mrr-seq",
    "mrr-cached",
    "freshness-p50",
    "freshness-p99",
    "lag-total",
    "workers",
)
OTHER_IDS = (
    "status",
    "user-input",
    "user-go",
    "user-recs",
    "user-recent",
    "user-computed-at",
    "item-input",
    "item-go",
    "item-neighbors",
    "item-successors",
    "item-trending-rank",
    "plot-rate",
    "plot-lag",
    "plot-hitrate",
    "plot-freshness",
)


class FakeProbe:
    """``LagProbe``'s interface with a fixed reading."""

    group = "streamrec"

    def __init__(self, lag: dict[str, int]) -> None:
        self.reading = lag
        self.reads = 0

    async def lag(self) -> dict[str, int]:
        self.reads += 1
        return dict(self.reading)

    def close(self) -> None:
        pass


class Elements(html.parser.HTMLParser):
    """id -> (tag, attributes) of every element with an id."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, tuple[str, dict[str, str | None]]] = {}
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.by_id[str(found["id"])] = (tag, found)
        for name in ("src", "href"):
            if found.get(name):
                self.refs.append(str(found[name]))


async def fetch(client: AioClient, path: str) -> tuple[int, dict[str, str], bytes]:
    resp = await client.get(path, allow_redirects=False)
    return resp.status, dict(resp.headers), await resp.read()


async def get_json(client: AioClient, path: str) -> tuple[int, Any]:
    resp = await client.get(path)
    return resp.status, await resp.json()


def static_file(name: str) -> bytes:
    return resources.files("stream_app.api").joinpath("static", name).read_bytes()


def test_root_redirects_to_the_dashboard(store: Any, call: Call) -> None:
    status, headers, _ = call(store, lambda c: fetch(c, "/"))
    assert status == 302 and headers["Location"] == "/dashboard"


def test_the_page_has_every_element_a_browser_test_needs(store: Any, call: Call) -> None:
    status, headers, body = call(store, lambda c: fetch(c, "/dashboard"))
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    page = Elements()
    page.feed(body.decode())
    missing = [i for i in FIGURE_IDS + OTHER_IDS if i not in page.by_id]
    assert missing == []
    valued = (*FIGURE_IDS, "user-computed-at", "item-trending-rank")
    assert [i for i in valued if page.by_id[i][1].get("data-value") != ""] == []
    tags = {i: page.by_id[i][0] for i in OTHER_IDS}
    assert tags["user-input"] == "input" and tags["item-input"] == "input"
    assert tags["user-go"] == "button" and tags["item-go"] == "button"
    assert {tags[i] for i in ("user-recs", "user-recent", "item-neighbors", "item-successors")} == {
        "ol"
    }
    assert {tags[i] for i in OTHER_IDS if i.startswith("plot-")} == {"svg"}
    assert "/dashboard/static/dashboard.js" in page.refs
    assert "/dashboard/static/dashboard.css" in page.refs


def test_the_static_files_are_served_from_the_package(store: Any, call: Call) -> None:
    async def scenario(client: AioClient) -> dict[str, tuple[int, dict[str, str], bytes]]:
        names = ("dashboard.js", "dashboard.css", "nope.js", "dashboard.html", "..%2Fserver.py")
        return {n: await fetch(client, f"/dashboard/static/{n}") for n in names}

    got = call(store, scenario)
    for name, ctype in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        status, headers, body = got[name]
        assert status == 200 and headers["Content-Type"].startswith(ctype), name
        assert body == static_file(name)
    for name in ("nope.js", "dashboard.html", "..%2Fserver.py"):
        assert got[name][0] == 404, name


def test_the_page_loads_nothing_from_elsewhere_and_writes_no_markup() -> None:
    script = static_file("dashboard.js").decode()
    urls = set(re.findall(r"https?://[^\s\"'`)]+", script))
    assert urls == {"http://www.w3.org/2000/svg"}  # a namespace name, never fetched
    for name in ("dashboard.html", "dashboard.css"):
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", static_file(name).decode())
    assert "innerHTML" not in script and "outerHTML" not in script
    assert "insertAdjacentHTML" not in script and "document.write" not in script


def metric_values(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def same(page: float | None, metric: float) -> bool:
    """/metrics writes a rate without trials as 0 and a quantile without samples as NaN."""
    if page is None:
        return metric == 0.0 or math.isnan(metric)
    return math.isclose(page, metric, rel_tol=1e-12)


def test_state_and_metrics_agree_on_the_same_snapshot(store: Any, call: Call) -> None:
    store.ranker_raw = {
        0: b'{"n_learned": 8, "n_pairs": 20, "pairs_correct": 15, "loss_sum": 10.0, "learn_s": 0.4}'
    }

    async def scenario(client: AioClient) -> tuple[Any, str]:
        _, state = await get_json(client, "/dashboard/state")
        return state, await (await client.get("/metrics")).text()

    state, text = call(store, scenario, partitions=2, lag_probe=FakeProbe({"events": 5}))
    metrics = metric_values(text)
    pairs = {
        "events": "streamrec_events_total",
        "dlq": "streamrec_dlq_total",
        "hit_rate_at_10": "streamrec_online_hit_rate_at_10",
        "hit_rate_at_10_cached": "streamrec_online_hit_rate_at_10_cached",
        "mrr_at_10": "streamrec_online_mrr_at_10",
        "mrr_at_10_cached": "streamrec_online_mrr_at_10_cached",
        "workers": "streamrec_workers",
    }
    for field, name in pairs.items():
        assert same(state[field], metrics[name]), (field, state[field], metrics[name])
    assert state["hit_rate_at_10"] == 0.4 and state["mrr_at_10_cached"] == 0.15  # not all 0
    assert same(state["freshness"]["p50_ms"], metrics["streamrec_freshness_p50_ms"])
    assert same(state["freshness"]["p99_ms"], metrics["streamrec_freshness_p99_ms"])
    running = 0
    for bucket in state["freshness"]["buckets"]:  # non-cumulative here, cumulative there
        running += bucket["count"]
        assert metrics[f'streamrec_freshness_ms_bucket{{le="{bucket["le"]}"}}'] == running
    assert [b["le"] for b in state["freshness"]["buckets"]][-1] == "+Inf"
    assert state["freshness"]["buckets"][1] == {"le": "10", "count": 30}
    assert state["freshness"]["p99_ms"] == 2000.0  # rank 99 of 100: the top of (1000, 2000]
    [ranker] = state["rankers"]
    assert ranker["partition"] == 0 and ranker["updates"] == 8 and ranker["pairs"] == 20
    assert metrics['streamrec_ranker_pairwise_accuracy{partition="0"}'] == 0.75
    assert ranker["pairwise_accuracy"] == 0.75 and ranker["mean_log_loss"] == 0.5
    assert state["lag"] == {"events": 5} and state["lag_total"] == 5
    assert metrics['streamrec_consumer_lag{group="streamrec",topic="events"}'] == 5
    assert state["redis_up"] is True and state["model_versions"] == {"session": ["s-7"]}
    assert state["stats"] == {"events": 10, "dlq": 1}
    assert state["series"] == []  # the sampler is off in this test


def test_state_without_trials_or_samples_reads_null_not_zero(store: Any, call: Call) -> None:
    from stream_app.cache.telemetry import TelemetrySnapshot

    store.snap = TelemetrySnapshot(events=3)
    _, state = call(store, lambda c: get_json(c, "/dashboard/state"))
    for field in ("hit_rate_at_10", "hit_rate_at_10_cached", "mrr_at_10", "mrr_at_10_cached"):
        assert state[field] is None, field
    assert state["freshness"]["p50_ms"] is None and state["freshness"]["p99_ms"] is None
    assert state["lag"] is None and state["lag_total"] is None  # no probe configured
    assert state["events"] == 3 and state["workers"] == 0


def test_state_carries_the_journals_and_skips_damaged_entries(store: Any, call: Call) -> None:
    _, state = call(store, lambda c: get_json(c, "/dashboard/state"))
    assert state["dead_letters"] == [
        {
            "reason": "not valid UTF-8 JSON",
            "topic": "events",
            "partition": 2,
            "offset": 41,
            "dead_at_ms": 1_700_000_000_500,
            "payload_size": 9,
            "preview": "<b>x</b>",  # as text: the page puts it in the DOM with textContent
        }
    ]
    [decision] = state["model_decisions"]
    assert decision["version"] == "s-8" and decision["accepted"] is False
    assert decision["trigger"] == "poll" and "below the serving model" in decision["reason"]


def test_state_with_redis_down_answers_with_redis_up_false(store: Any, call: Call) -> None:
    store.down = True
    status, state = call(store, lambda c: get_json(c, "/dashboard/state"))
    assert status == 200 and state["redis_up"] is False
    assert state["events"] is None and state["hit_rate_at_10"] is None
    assert state["dead_letters"] == [] and state["rankers"] == []


def test_item_lookup_gives_neighbours_successors_and_trending_rank(store: Any, call: Call) -> None:
    async def scenario(client: AioClient) -> dict[str, tuple[int, Any]]:
        paths = {
            "i1": "/dashboard/item/i1?n=1",
            "t2": "/dashboard/item/t2",
            "new": "/dashboard/item/new",
        }
        return {name: await get_json(client, path) for name, path in paths.items()}

    got = call(store, scenario)
    assert got["i1"] == (
        200,
        {
            "item_id": "i1",
            "neighbors": [{"item_id": "i2", "score": 0.9}],
            "successors": [{"item_id": "i4", "score": 0.6}],
            "trending_rank": None,
            "trending_score": None,
        },
    )
    status, t2 = got["t2"]
    assert status == 200 and t2["trending_rank"] == 2 and t2["trending_score"] == 4.0
    # unknown: a 200 with nothing in it, so the page logs no failed request
    status, new = got["new"]
    assert status == 200 and new["neighbors"] == [] and new["successors"] == []
    assert new["trending_rank"] is None


@pytest.mark.parametrize("path", ["/dashboard/item/{}", "/recommendations/{}", "/similar/{}"])
def test_ids_longer_than_the_event_contract_are_a_400(store: Any, call: Call, path: str) -> None:
    store.neighbours["x" * 256] = [("i1", 0.5)]

    async def scenario(client: AioClient) -> tuple[tuple[int, Any], int]:
        long = await get_json(client, path.format("x" * 257))
        return long, (await client.get(path.format("x" * 256))).status

    (status, body), at_limit = call(store, scenario)
    assert status == 400 and body["error"] == "bad_request" and "256" in body["detail"]
    assert at_limit == 200


def test_item_lookup_with_redis_down_is_a_503(store: Any, call: Call) -> None:
    store.down = True
    status, body = call(store, lambda c: get_json(c, "/dashboard/item/i1"))
    assert status == 503 and body["error"] == "unavailable"


def test_the_sampler_runs_with_the_app_and_feeds_the_series(store: Any, call: Call) -> None:
    probe = FakeProbe({"events": 4, "deltas": 1})

    async def scenario(client: AioClient) -> Any:
        await asyncio.sleep(0.2)  # about ten samples at 20 ms
        _, state = await get_json(client, "/dashboard/state")
        return state

    state = call(store, scenario, lag_probe=probe, sampling=True, sample_s=0.02)
    series = state["series"]
    assert len(series) >= 3
    assert [p["t_ms"] for p in series] == sorted(p["t_ms"] for p in series)
    assert series[0]["events_per_s"] is None and series[-1]["events_per_s"] == 0.0
    assert {p["events"] for p in series} == {10} and {p["lag_total"] for p in series} == {5}
    assert series[-1]["hit_rate_at_10"] == 0.4 and series[-1]["redis_up"] is True
    assert state["lag_total"] == 5  # the sampler's latest lag reading


def test_the_sampler_survives_redis_down_and_logs_it_once(
    store: Any, call: Call, caplog: pytest.LogCaptureFixture
) -> None:
    store.down = True

    async def scenario(client: AioClient) -> Any:
        await asyncio.sleep(0.2)
        _, state = await get_json(client, "/dashboard/state")
        return state

    with caplog.at_level(logging.INFO, logger="stream_app.api.sampler"):
        state = call(store, scenario, sampling=True, sample_s=0.02)
    assert store.snapshot_reads >= 4  # it kept sampling
    assert len(state["series"]) >= 3 and {p["redis_up"] for p in state["series"]} == {False}
    assert {p["events"] for p in state["series"]} == {None}
    warnings = [r for r in caplog.records if r.name == "stream_app.api.sampler"]
    assert len(warnings) == 1 and "connection refused" in warnings[0].getMessage()
