"""Forward-decayed popularity ("trending") as pure functions every cache backend shares.

The stored score of an item is ``sum(weight * 2 ** ((t - epoch) / half_life))`` over its events
(see ``models.online.decay``), so a Redis sorted set ranks by decayed popularity with plain
``ZINCRBY`` and no periodic rewrite. The epoch is chosen once (the first batch's earliest event)
and moved forward by a rescale when the stored numbers would grow past float precision.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from models.online.decay import forward_to_decayed, forward_weight, needs_rescale, rescale_factor


def forward_increments(
    weights: Iterable[tuple[str, float, int]], epoch_ms: float, half_life_s: float
) -> dict[str, float]:
    """Sum the forward weights per item, so a batch costs one ``ZINCRBY`` per distinct item.

    >>> forward_increments([("a", 1.0, 3_600_000), ("a", 1.0, 0), ("b", 2.0, 0)], 0, 3600.0)
    {'a': 3.0, 'b': 2.0}
    """
    out: dict[str, float] = {}
    for item_id, weight, ts in weights:
        out[item_id] = out.get(item_id, 0.0) + forward_weight(weight, ts, epoch_ms, half_life_s)
    return out


def plan_epoch(
    current_epoch_ms: float | None, batch_ts: Sequence[int], half_life_s: float
) -> tuple[float, float | None]:
    """``(epoch to use, rescale factor or None)`` for a batch with timestamps ``batch_ts``.

    No epoch yet: the batch's earliest timestamp. If the batch's latest event would get a
    forward weight above 2**40 (a batch can span weeks when old data is replayed), the epoch
    moves to that event instead -- and stored scores are rescaled by the factor. With the epoch
    at or past every event of the batch, no forward weight can overflow a float.

    >>> plan_epoch(None, [5_000, 9_000], 60.0)
    (5000, None)
    >>> plan_epoch(None, [0, 3_600_000 * 2000], 3600.0)  # the first batch spans 2,000 half-lives
    (7200000000, None)
    >>> epoch, factor = plan_epoch(0, [3_600_000 * 41], 3600.0)
    >>> epoch, factor == 2.0 ** -41
    (147600000, True)
    """
    if not batch_ts:
        return (current_epoch_ms if current_epoch_ms is not None else 0), None
    latest = max(batch_ts)
    if current_epoch_ms is None:
        earliest = min(batch_ts)
        return (latest if needs_rescale(latest, earliest, half_life_s) else earliest), None
    if needs_rescale(latest, current_epoch_ms, half_life_s):
        return latest, rescale_factor(current_epoch_ms, latest, half_life_s)
    return current_epoch_ms, None


def decayed_ranking(
    stored: Iterable[tuple[str, float]], epoch_ms: float, half_life_s: float, now_ms: float
) -> list[tuple[str, float]]:
    """Stored forward scores to decayed scores at ``now_ms``, best first, ties by item id.

    The tie rule (item id ascending) keeps the ranking deterministic across backends. A "now"
    before the epoch (old data replayed after newer data) reads the scores as of the epoch:
    the order is the same at any time, and decaying *backwards* could overflow.

    >>> decayed_ranking([("b", 4.0), ("a", 4.0), ("c", 8.0)], 0, 3600.0, 7_200_000)
    [('c', 2.0), ('a', 1.0), ('b', 1.0)]
    >>> decayed_ranking([("a", 2.0)], 10**13, 1.0, 0)
    [('a', 2.0)]
    """
    now = max(now_ms, epoch_ms)
    ranked = [
        (item, forward_to_decayed(score, now, epoch_ms, half_life_s)) for item, score in stored
    ]
    ranked.sort(key=lambda pair: (-pair[1], pair[0]))
    return ranked
