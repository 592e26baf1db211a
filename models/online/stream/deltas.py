"""The two-sided stream model's statistics: user-side pair deltas, item rows, published lists.

The user side (events keyed by user) turns a batch into co-occurrence and transition
increments (:func:`user_side_batch`, :func:`transitions`, :func:`deltas_by_item`); the item side
(keyed by item) folds them into one row per item (:func:`apply_deltas`) and publishes each
item's top neighbours and successors (:func:`published_lists`). Plain data in and out: the
worker runs these between Kafka and Redis, :class:`models.online.stream.StreamModel` in process.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from models.online.cooccurrence import pair_weights

#: Co-occurrence window (distinct recent items an event pairs with).
PAIR_WINDOW = 10
#: Co-occurrence entries kept per item row (the memory bound of the item table).
MAX_ROW_PAIRS = 200
#: Neighbours published per item.
NEIGHBORS_M = 100
#: Transition counts kept per item row, and successors published per item.
MAX_SUCCESSORS = 50

#: key of a row's per-source-partition high-water marks (see :func:`apply_delta`)
HWM_FIELD = "o"
#: keys of a row's transition counts (successor -> count) and their total
SUCC_FIELD = "t"
SUCC_TOTAL_FIELD = "tn"


@dataclass(slots=True)
class ItemDelta:
    """Increments for one item's row from one user-side batch: its squared-norm increment,
    co-occurrence increments with other items and transition counts to the items users went to
    next (``succ``). ``src`` = (source partition, last source offset) that produced it, so the
    item side can skip a delta it already applied.

    >>> d = ItemDelta(norm=1.0, pairs={"b": 2.0}, src=(0, 41), succ={"c": 1.0})
    >>> ItemDelta.from_row(d.to_row("a")) == ("a", d)
    True
    """

    norm: float = 0.0
    pairs: dict[str, float] = field(default_factory=dict)
    src: tuple[int, int] | None = None
    succ: dict[str, float] = field(default_factory=dict)

    def to_row(self, item: str) -> list[object]:
        """The delta of ``item`` as the item-deltas topic carries it: ``[item, norm, pairs,
        source partition or null, source offset or null, successors]``."""
        src = self.src
        if src is None:
            return [item, self.norm, self.pairs, None, None, self.succ]
        return [item, self.norm, self.pairs, src[0], src[1], self.succ]

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> tuple[str, ItemDelta]:
        """Inverse of :meth:`to_row`. The decoded JSON is used as is (keys are strings, values
        numbers): these rows come from our own user side, and converting or copying every pair
        again was a few % of the item side's CPU."""
        item, norm, pairs, part, offset, succ = row
        return str(item), cls(norm, pairs, None if part is None else (part, offset), succ)


def user_side_batch(
    history: Sequence[str],
    events: Sequence[tuple[str, float]],
    *,
    window: int,
) -> list[tuple[str, float, list[tuple[str, float]]]]:
    """Each event's (item, weight, [(other item, pair weight)]) given the user's history.

    Past items count with weight 1 (the history table keeps items, not weights); an event pairs
    with the newest ``window`` distinct other items, including the batch's earlier events.

    >>> user_side_batch(["a"], [("b", 2.0), ("c", 1.0)], window=5)
    [('b', 2.0, [('a', 2.0)]), ('c', 1.0, [('b', 2.0), ('a', 1.0)])]
    """
    recent: list[tuple[str, float]] = [(item, 1.0) for item in history[-window:]]
    out = []
    for item, weight in events:
        out.append((item, weight, pair_weights(recent, item, weight, window=window)))
        recent.append((item, weight))
        if len(recent) > 2 * window:
            del recent[: len(recent) - 2 * window]
    return out


def transitions(history: Sequence[str], items: Sequence[str]) -> list[tuple[str, str]]:
    """``(previous item, item)`` for each event of a batch: "after a, this user went to b".

    The previous item is the user's last one before the event (history, then the batch's
    earlier events); a repeat of it is no transition (the online model's rule).

    >>> transitions(["a"], ["b", "b", "c"])
    [('a', 'b'), ('b', 'c')]
    """
    out = []
    previous = history[-1] if history else None
    for item in items:
        if previous is not None and previous != item:
            out.append((previous, item))
        previous = item
    return out


def deltas_by_item(
    learned: Iterable[tuple[str, float, list[tuple[str, float]]]],
    moves: Iterable[tuple[str, str]] = (),
) -> dict[str, ItemDelta]:
    """Aggregate a batch's events into one delta per touched item (both directions of a pair),
    plus its transitions ``moves`` (:func:`transitions`) on the previous item's row.

    >>> d = deltas_by_item([("b", 2.0, [("a", 2.0)])], [("a", "b")])
    >>> d["b"].norm, d["b"].pairs, d["a"].pairs, d["a"].succ
    (4.0, {'a': 2.0}, {'b': 2.0}, {'b': 1.0})
    """
    # The inner loop runs ~2 * window times per event on the event loop: look up before
    # creating (``setdefault(k, ItemDelta())`` builds and drops a delta per pair) and keep the
    # row dicts in locals.
    out: dict[str, ItemDelta] = {}
    find = out.get
    for item, weight, pairs in learned:
        own = find(item)
        if own is None:
            own = out[item] = ItemDelta()
        own.norm += weight * weight
        own_pairs = own.pairs
        for other, w in pairs:
            own_pairs[other] = own_pairs.get(other, 0.0) + w
            back = find(other)
            if back is None:
                back = out[other] = ItemDelta()
            back_pairs = back.pairs
            back_pairs[item] = back_pairs.get(item, 0.0) + w
    for previous, item in moves:
        row = find(previous)
        if row is None:
            row = out[previous] = ItemDelta()
        row.succ[item] = row.succ.get(item, 0.0) + 1.0
    return out


def apply_delta(
    row: Mapping[str, object] | None,
    delta: ItemDelta,
    max_pairs: int,
    max_successors: int = 50,
) -> dict:
    """The item's row after ``delta``; unchanged if its ``src`` offset was applied already.

    The row remembers, per source partition, the last source offset applied: a delta resent
    after a restart is skipped (idempotent). The co-occurrence row is the memory bound: once it
    holds more than ``max_pairs + max_pairs // 2`` entries it is cut back to its ``max_pairs``
    heaviest (ties by item id). Cutting with that slack instead of at every delta is what keeps
    a popular item's row cheap: a full sort per touch was most of the item side's CPU. The
    transition counts (``"t"``, total ``"tn"``, which keeps counting what the cap drops, as the
    online model's ``Transitions``) are bounded the same way by ``max_successors``.

    >>> row = apply_delta(None, ItemDelta(1.0, {"b": 1.0}, (0, 5)), max_pairs=10)
    >>> row["n"], row["p"]
    (1.0, {'b': 1.0})
    >>> apply_delta(row, ItemDelta(1.0, {"b": 1.0}, (0, 5)), max_pairs=10) == row
    True
    """
    folded = apply_deltas(row, [delta], max_pairs, max_successors)
    return folded if folded is not None else (dict(row) if row else _empty_row())


def apply_deltas(
    row: Mapping[str, object] | None,
    deltas: Sequence[ItemDelta],
    max_pairs: int,
    max_successors: int = 50,
) -> dict | None:
    """The item's row after ``deltas`` (in order), or None when every one of them was applied
    before (the row is unchanged and need not be written again).

    One item batch often holds several deltas for a popular item (one per user-side batch and
    source partition): summing them first and copying and capping the row once, instead of once
    per delta, is what this is for. The cap (see :func:`apply_delta`) is applied after the sum,
    so a pair cut by one delta and increased by the next keeps both increments.

    >>> d1, d2 = ItemDelta(1.0, {"b": 1.0}, (0, 5)), ItemDelta(4.0, {"b": 2.0, "c": 1.0}, (0, 9))
    >>> row = apply_deltas(None, [d1, d2], max_pairs=10)
    >>> row["n"], row["p"], row["o"]
    (5.0, {'b': 3.0, 'c': 1.0}, {'0': 9})
    >>> apply_deltas(row, [d1, d2], max_pairs=10) is None
    True
    """
    base = row or {}
    marks = dict(base.get(HWM_FIELD, {}))  # type: ignore[call-overload]
    fresh = []
    for delta in deltas:
        if delta.src is not None:
            part, offset = str(delta.src[0]), delta.src[1]
            if part in marks and offset <= marks[part]:
                continue
            marks[part] = offset
        fresh.append(delta)
    if not fresh:
        return None
    pairs = dict(base.get("p", {}))  # type: ignore[call-overload]
    succ = dict(base.get(SUCC_FIELD, {}))  # type: ignore[call-overload]
    norm = float(base.get("n", 0.0))  # type: ignore[arg-type]
    moves = 0.0
    get = pairs.get
    for delta in fresh:
        norm += delta.norm
        for other, w in delta.pairs.items():
            pairs[other] = get(other, 0.0) + w
        for other, w in delta.succ.items():
            succ[other] = succ.get(other, 0.0) + w
            moves += w
    out = {"n": norm, "p": _capped(pairs, max_pairs), HWM_FIELD: marks}
    if succ:
        out[SUCC_FIELD] = _capped(succ, max_successors)
        out[SUCC_TOTAL_FIELD] = float(base.get(SUCC_TOTAL_FIELD, 0.0)) + moves  # type: ignore[arg-type]
    return out


def _empty_row() -> dict:
    return {"n": 0.0, "p": {}, HWM_FIELD: {}}


def _capped(weights: dict[str, float], cap: int) -> dict[str, float]:
    """``weights`` cut back to its ``cap`` heaviest (ties by key) once past ``cap * 1.5``."""
    if len(weights) <= cap + cap // 2:
        return weights
    ranked = sorted([(-w, key) for key, w in weights.items()])[:cap]
    return {key: -negative for negative, key in ranked}


def neighbor_list(
    row: Mapping[str, object], norm_a: float, norms: Mapping[str, float], m: int
) -> list[tuple[str, float]]:
    """Top-``m`` (item, cosine) of a row: ``C(a, b) / sqrt(N(a) N(b))``, ties by item id.

    An item whose norm is not known yet (its own delta not applied) is left out.

    >>> neighbor_list({"p": {"b": 2.0, "c": 1.0}}, 4.0, {"b": 4.0, "c": 1.0}, 5)
    [('b', 0.5), ('c', 0.5)]
    """
    if norm_a <= 0:
        return []
    scale = -1.0 / math.sqrt(norm_a)
    sqrt = math.sqrt
    # (negative cosine, item) tuples: a plain tuple sort is the fastest top-m in CPython here.
    ranked = sorted(
        [
            (c * scale / sqrt(nb), other)
            for other, c in row.get("p", {}).items()  # type: ignore[attr-defined]
            if (nb := norms.get(other, 0.0)) > 0
        ]
    )
    return [(other, -negative) for negative, other in ranked[:m]]


def successor_list(row: Mapping[str, object], m: int) -> list[tuple[str, float]]:
    """Top-``m`` (item, P(next = item | this item)) of a row, ties by item id.

    >>> successor_list({"t": {"b": 3.0, "c": 1.0}, "tn": 5.0}, 5)
    [('b', 0.6), ('c', 0.2)]
    """
    total = float(row.get(SUCC_TOTAL_FIELD, 0.0))  # type: ignore[arg-type]
    if total <= 0:
        return []
    ranked = sorted([(-c, other) for other, c in row.get(SUCC_FIELD, {}).items()])  # type: ignore[attr-defined]
    return [(other, -negative / total) for negative, other in ranked[:m]]


def published_lists(
    rows: Mapping[str, Mapping[str, object]],
    norms: Mapping[str, float],
    m: int,
    max_successors: int,
) -> tuple[dict[str, list[tuple[str, float]]], dict[str, list[tuple[str, float]]]]:
    """What the item side publishes for these rows: each item's top-``m`` cosine neighbours
    (``norms``: every item's squared norm the cosines need, these rows' own included) and, for
    rows with transitions, its top-``max_successors`` successors.

    >>> rows = {"a": {"n": 1.0, "p": {"b": 1.0}, "t": {"b": 1.0}, "tn": 1.0}}
    >>> published_lists(rows, {"a": 1.0, "b": 4.0}, 5, 5)
    ({'a': [('b', 0.5)]}, {'a': [('b', 1.0)]})
    """
    neighbors = {
        item: neighbor_list(row, float(row.get("n", 0.0)), norms, m)  # type: ignore[arg-type]
        for item, row in rows.items()
    }
    successors = {
        item: successor_list(row, max_successors)
        for item, row in rows.items()
        if row.get(SUCC_FIELD)
    }
    return neighbors, successors


def merge_history(old: Sequence[str], new_items: Sequence[str], max_len: int) -> list[str]:
    """Distinct items, most recent last, at most ``max_len`` (a re-seen item moves to the end).

    Distinct so that ``max_len`` bounds the *seen set* used for exclusion, not the raw event count.

    >>> merge_history(["a", "b", "c"], ["b", "d"], 3)
    ['c', 'b', 'd']
    """
    merged = dict.fromkeys(old)
    for item in new_items:
        merged.pop(item, None)
        merged[item] = None
    items = list(merged)
    return items[-max_len:] if len(items) > max_len else items
