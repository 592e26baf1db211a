"""The blended recommender: filtering, reasons, the user/item seam, snapshot round-trip."""

from __future__ import annotations

import numpy as np
import pytest

from models.datasets import SyntheticConfig, generate_synthetic
from models.events import Interaction
from models.online.recommender import OnlineRecommender
from models.online.snapshot import SnapshotError, load_snapshot, save_snapshot

T0 = 1_700_000_000_000


def _small_stream(n_events: int = 3_000):
    return generate_synthetic(
        SyntheticConfig(n_users=60, n_items=80, n_clusters=4, n_events=n_events, seed=3)
    )


def test_recommend_filters_consumed_and_explains():
    rec = OnlineRecommender(reranker=None, catalog={"x": {"title": "Heat"}})
    events = [("a", "x"), ("a", "y"), ("b", "x"), ("c", "z"), ("c", "z"), ("d", "z")]
    for n, (u, i) in enumerate(events):
        rec.learn_one(Interaction(u, i, "purchase" if u == "b" else "view", T0 + n))
    out = rec.recommend("b", k=5)
    assert [r.item_id for r in out] == ["y", "z"]  # x is consumed; y co-occurs with x
    assert out[0].reason == "because you bought Heat"
    assert out[0].source == "knn"
    assert out[1].reason == "trending now"
    assert out[0].score > out[1].score
    cold = rec.recommend("nobody", k=1)
    # Popularity is event-weighted: x (a view + a purchase = 1 + 5) beats z (three views).
    assert [(r.item_id, r.reason) for r in cold] == [("x", "trending now")]


def test_recovers_planted_clusters_on_synthetic():
    ds = _small_stream(3_000)
    rec = OnlineRecommender(seed=0, user_cf=False, content=False, reranker=None)
    for event in ds.events:
        rec.learn_one(event)
    cluster = ds.planted.item_cluster
    same = total = 0
    for item in list(cluster)[:40]:
        for neighbor, _ in rec.similarity.neighbors(item, 5):
            same += cluster[neighbor] == cluster[item]
            total += 1
    # 4 clusters: chance is ~25%; neighbours found by co-occurrence are mostly in-cluster.
    assert total > 100
    assert same / total > 0.8


def test_snapshot_round_trip(tmp_path):
    ds = _small_stream(2_000)
    rec = OnlineRecommender(seed=5, catalog=ds.items, min_trained=50)
    for event in ds.events[:1_500]:
        rec.learn_one(event)
    save_snapshot(rec, tmp_path / "snap")
    restored = load_snapshot(tmp_path / "snap")
    users = sorted({e.user_id for e in ds.events[:1_500]})[:10]
    for user in users:
        assert restored.rank(user, 10) == rec.rank(user, 10)
        assert restored.recommend(user, 3) == rec.recommend(user, 3)
    # Both keep learning identically from the same events.
    for event in ds.events[1_500:]:
        rec.learn_one(event)
        restored.learn_one(event)
    for user in users:
        assert restored.rank(user, 10) == rec.rank(user, 10)
    np.testing.assert_allclose(rec.ranker.weight_vector(), restored.ranker.weight_vector())


def test_snapshot_refuses_tampered_arrays(tmp_path):
    rec = OnlineRecommender(reranker=None)
    rec.learn_one(Interaction("a", "x", "view", T0))
    save_snapshot(rec, tmp_path)
    with (tmp_path / "arrays.npz").open("ab") as handle:
        handle.write(b"junk")
    with pytest.raises(SnapshotError):
        load_snapshot(tmp_path)
