"""Forward-decayed trending: increments, epoch/rescale, decayed ranking (backend-independent)."""

import math

import pytest

from models.online.decay import decay_factor
from stream_app.cache.memory import MemoryCache
from stream_app.cache.trending import decayed_ranking, forward_increments, plan_epoch

HOUR_MS = 3_600_000
T0 = 1_700_000_000_000


def test_recent_events_outrank_the_same_count_of_old_ones():
    cache = MemoryCache()
    old = [("old", 1.0, T0)] * 3
    recent = [("new", 1.0, T0 + 2 * HOUR_MS)] * 3
    top = cache.update_trending(old + recent, 3600.0, T0 + 2 * HOUR_MS, 10)
    assert [item for item, _ in top] == ["new", "old"]
    # Two half-lives later the old item is worth a quarter of its raw count.
    assert dict(top)["old"] == pytest.approx(3 * decay_factor(2 * HOUR_MS, 3600.0))
    assert dict(top)["new"] == pytest.approx(3.0)


def test_weights_add_up_per_item():
    inc = forward_increments([("a", 2.0, 0), ("a", 3.0, 0), ("b", 1.0, HOUR_MS)], 0, 3600.0)
    assert inc == {"a": 5.0, "b": 2.0}


def test_first_batch_sets_the_epoch_and_far_future_batches_rescale():
    assert plan_epoch(None, [T0 + 5, T0], 60.0) == (T0, None)
    assert plan_epoch(T0, [T0 + HOUR_MS], 3600.0) == (T0, None)
    epoch, factor = plan_epoch(T0, [T0 + 50 * HOUR_MS], 3600.0)
    assert epoch == T0 + 50 * HOUR_MS
    assert factor == pytest.approx(2.0**-50)


def test_rescaling_does_not_change_decayed_scores():
    """Across an epoch move the decayed values are what plain exponential decay says."""
    cache = MemoryCache()
    cache.update_trending([("a", 1.0, T0)], 3600.0, T0, 5)
    late = T0 + 45 * HOUR_MS  # beyond 2**40: forces a rescale
    top = dict(cache.update_trending([("b", 1.0, late)], 3600.0, late, 5))
    assert top["b"] == pytest.approx(1.0)
    assert top["a"] == pytest.approx(2.0**-45, rel=1e-9)
    assert all(math.isfinite(v) for v in top.values())


def test_ranking_ties_break_by_item_id():
    assert decayed_ranking([("z", 1.0), ("a", 1.0), ("m", 2.0)], 0, 60.0, 0) == [
        ("m", 2.0),
        ("a", 1.0),
        ("z", 1.0),
    ]


def test_memory_backend_keeps_only_the_most_popular_items():
    cache = MemoryCache(max_trending=3)
    weights = [(f"i{n}", float(n), T0) for n in range(10)]
    top = cache.update_trending(weights, 3600.0, T0, 10)
    assert [item for item, _ in top] == ["i9", "i8", "i7"]


def test_a_first_batch_spanning_months_does_not_overflow():
    """Replayed data: one batch can span far more than 1,024 half-lives (2**1024 overflows)."""
    cache = MemoryCache()
    weights = [("old", 1.0, T0), ("new", 1.0, T0 + 90 * 24 * HOUR_MS)]
    top = dict(cache.update_trending(weights, 3600.0, T0 + 90 * 24 * HOUR_MS, 5))
    assert top["new"] == pytest.approx(1.0)
    assert top["old"] == 0.0  # 2,160 half-lives old: nothing left of it


def test_later_batches_far_ahead_rescale_instead_of_overflowing():
    cache = MemoryCache()
    cache.update_trending([("a", 1.0, T0)], 3600.0, T0, 5)
    far = T0 + 5_000 * HOUR_MS
    top = dict(cache.update_trending([("b", 1.0, far), ("a", 1.0, far)], 3600.0, far, 5))
    assert top == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}


def test_old_data_after_new_data_reads_without_overflow():
    cache = MemoryCache()
    cache.update_trending([("new", 1.0, T0 + 5_000 * HOUR_MS)], 3600.0, T0 + 5_000 * HOUR_MS, 5)
    top = cache.update_trending([("old", 1.0, T0)], 3600.0, T0, 5)
    assert [item for item, _ in top] == ["new", "old"]
    assert all(math.isfinite(score) for _, score in top)
