"""Pure per-batch logic of the two-sided topology: user side -> item deltas -> item side.

The worker splits the online item-to-item model (``models.online.cooccurrence``) along Kafka's
partitioning, as the issue asks:

- the **user side** (events keyed by user) knows each user's recent items and turns a batch into
  co-occurrence increments with :func:`user_side_batch` (the same pair rule as
  ``models.online.cooccurrence.pair_weights``); :func:`deltas_by_item` aggregates them into one
  :class:`ItemDelta` per touched item, which the agent sends to an internal topic keyed by item;
- the **item side** (that topic) owns one row per item (``{"n": squared norm, "p": {other:
  co-occurrence}}``) in a Faust table; :func:`apply_delta` folds a delta into a row and
  :func:`neighbor_list` turns a row into the item's top-M cosine neighbours, published to Redis;
- the user side then scores a batch's users from the published neighbour lists of their recent
  items (:func:`score_users`), falls back to trending, and blends in the session model
  (:func:`blend_session`).

Everything here is plain data in, plain data out: no Faust, no Redis.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.online.cooccurrence import pair_weights
from stream_app.cache.base import Recommendation

SESSION_REASON = "based on your current session"
TRENDING_REASON = "trending now"
#: key of a row's per-source-partition high-water marks (see :func:`apply_delta`)
HWM_FIELD = "o"
#: keys of a row's transition counts (successor -> count) and their total
SUCC_FIELD = "t"
SUCC_TOTAL_FIELD = "tn"
#: weights of the fixed blend (``models.online.recommender.DEFAULT_BLEND``'s knn and markov)
KNN_WEIGHT = 1.0
MARKOV_WEIGHT = 0.3


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

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ItemDelta:
        """A delta in the form the topic carried before :meth:`to_row` (``{"n", "p", "s",
        "x"}``), still read so that an upgraded worker applies what an older one sent."""
        src = data.get("s")
        return cls(
            float(data.get("n", 0.0)),  # type: ignore[arg-type]
            dict(data.get("p") or {}),  # type: ignore[call-overload]
            (int(src[0]), int(src[1])) if src else None,  # type: ignore[index]
            dict(data.get("x") or {}),  # type: ignore[call-overload]
        )


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
    # creating (``setdefault(k, ItemDelta())`` built and dropped a delta per pair, a third of
    # this function's time in a py-spy profile) and keep the row dicts in locals.
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


class ListIndex:
    """Published item lists as numpy arrays over one growing item vocabulary.

    Scoring sums up to ``recent x M`` (item, weight) pairs per user; as Python dict updates that
    was a quarter of the worker's CPU, as one ``np.unique`` + ``np.bincount`` it is a few
    small array calls. A list is converted once per list *object*: ``RedisCache`` returns the
    same object while a list's bytes are unchanged, so most lists are converted once, not
    once per batch.

    >>> index = ListIndex()
    >>> lst = [("b", 0.5), ("c", 0.25)]
    >>> ids, weights = index.arrays("a", lst)
    >>> [index.items[i] for i in ids], weights.tolist()
    (['b', 'c'], [0.5, 0.25])
    >>> index.arrays("a", lst)[0] is ids
    True
    """

    def __init__(self, max_lists: int = 200_000) -> None:
        self.ids: dict[str, int] = {}
        self.items: list[str] = []
        self.max_lists = max_lists
        self._lists: dict[str, tuple[object, np.ndarray, np.ndarray]] = {}

    def id_of(self, item: str) -> int:
        found = self.ids.get(item)
        if found is None:
            found = self.ids[item] = len(self.items)
            self.items.append(item)
        return found

    def arrays(self, owner: str, lst: Sequence[tuple[str, float]]) -> tuple[np.ndarray, np.ndarray]:
        """``(item ids, weights)`` of ``owner``'s list."""
        entry = self._lists.get(owner)
        if entry is None or entry[0] is not lst:
            if len(self._lists) >= self.max_lists:
                self._lists.clear()
            ids = np.fromiter((self.id_of(item) for item, _ in lst), np.int64, len(lst))
            weights = np.fromiter((w for _, w in lst), np.float64, len(lst))
            entry = self._lists[owner] = (lst, ids, weights)
        return entry[1], entry[2]


#: :func:`_groups` flags every possible key while the key space is at most this many times the
#: number of keys (a batch over a small catalogue); past that, one sort is cheaper
DENSE_KEYS_PER_ENTRY = 8


def _groups(keys: np.ndarray, space: int) -> tuple[np.ndarray, np.ndarray]:
    """``(group of each key, distinct keys ascending)`` for int64 ``keys`` in ``[0, space)``.

    ``np.unique(return_inverse=True)`` gives the same, but its argsort over a whole batch cost
    about as much as the per-user calls it replaces: a flag per possible key, or one plain sort
    of the keys packed with their positions, is several times cheaper. Either way the group of
    each key is given in input order, so a ``bincount`` over it adds a group's weights in input
    order, exactly as a per-user ``bincount`` did.

    >>> _groups(np.array([5, 2, 5, 9]), 10)
    (array([1, 0, 1, 2]), array([2, 5, 9]))
    """
    count = keys.shape[0]
    if space <= DENSE_KEYS_PER_ENTRY * count:
        flags = np.zeros(space, bool)
        flags[keys] = True
        distinct = np.flatnonzero(flags)
        lookup = np.empty(space, np.int64)
        lookup[distinct] = np.arange(distinct.shape[0])
        return lookup[keys], distinct
    shift = count.bit_length()
    if space.bit_length() + shift > 62:  # no room to pack positions: the slow general way
        distinct, inverse = np.unique(keys, return_inverse=True)
        return inverse.reshape(-1), distinct
    packed = (keys << shift) | np.arange(count)
    packed.sort()  # positions break ties: equal keys keep their input order
    ordered = packed >> shift
    firsts = np.empty(count, bool)
    firsts[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=firsts[1:])
    group = np.empty(count, np.int64)
    group[packed & ((1 << shift) - 1)] = np.cumsum(firsts) - 1
    return group, ordered[firsts]


def _segments(sorted_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(start, length)`` of each run of equal values in ``sorted_rows`` (non-empty).

    >>> _segments(np.array([0, 0, 3, 3, 3, 4]))
    (array([0, 2, 5]), array([2, 3, 1]))
    """
    change = np.flatnonzero(sorted_rows[1:] != sorted_rows[:-1]) + 1
    starts = np.concatenate([[0], change])
    return starts, np.diff(np.concatenate([starts, [sorted_rows.shape[0]]]))


def _scaled(
    values: np.ndarray, present: np.ndarray, starts: np.ndarray, lengths: np.ndarray, weight: float
) -> np.ndarray:
    """One source's contribution: each user's ``values`` times ``weight / their max`` (as they
    are where that max is not positive), 0 where the source has no entry.

    The per-user ``values * (weight / values.max())`` for a whole batch; the trailing ``+ 0.0``
    repeats the per-user ``bincount`` that placed the values (it turns ``-0.0`` into ``0.0``).

    >>> _scaled(np.array([2.0, 4.0, 9.0]), np.array([True, True, False]),
    ...         np.array([0, 2]), np.array([2, 1]), 1.0).tolist()
    [0.5, 1.0, 0.0]
    """
    top = np.maximum.reduceat(np.where(present, values, -np.inf), starts)
    scale = np.divide(weight, top, out=np.ones_like(top), where=top > 0)
    return np.add(
        values * np.repeat(scale, lengths), 0.0, out=np.zeros(values.shape), where=present
    )


def _string_ranks(ids: np.ndarray, items: Sequence[str]) -> np.ndarray:
    """Rank of each id's item string among ``ids``' strings: the scores' tie-break is the item
    id, and integer ids follow arrival, not the string order.

    >>> _string_ranks(np.array([0, 1, 0]), ["b", "a"]).tolist()
    [1, 0, 1]
    """
    group, distinct = _groups(ids, len(items))
    names = [items[i] for i in distinct.tolist()]
    ranks = np.empty(distinct.shape[0], np.int64)
    ranks[sorted(range(len(names)), key=names.__getitem__)] = np.arange(distinct.shape[0])
    return ranks[group]


def _top_n(
    rows: np.ndarray,
    totals: np.ndarray,
    ids: np.ndarray,
    items: Sequence[str],
    n: int,
    segments: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """Positions of each user's ``n`` best (``totals`` descending, then item string), by user
    (``rows``, ascending and contiguous), best first.

    A row-wise ``np.partition`` over the candidates padded to a matrix cuts each user's list to
    the ones tied with or above its ``n``-th best; only those are fully sorted.

    >>> rows, totals = np.array([0, 0, 0, 1]), np.array([1.0, 3.0, 3.0, 2.0])
    >>> _top_n(rows, totals, np.array([0, 2, 1, 0]), "abc", 2, _segments(rows)).tolist()
    [2, 1, 3]
    """
    starts, lengths = segments
    negative = -totals
    widest = int(lengths.max())
    if widest > n:
        padded = np.full((starts.shape[0], widest), np.inf)
        segment = np.repeat(np.arange(starts.shape[0]), lengths)
        padded[segment, np.arange(totals.shape[0]) - starts[segment]] = negative
        cut = np.partition(padded, n - 1, axis=1)[:, n - 1]
        picked = np.flatnonzero(negative <= cut[segment])
    else:
        picked = np.arange(totals.shape[0])
    ties = _string_ranks(ids[picked], items)
    ranked = picked[np.lexsort((ties, negative[picked], rows[picked]))]
    firsts, counts = _segments(rows[ranked])
    place = np.arange(ranked.shape[0]) - np.repeat(firsts, counts)
    return ranked[place < n]


@dataclass(slots=True)
class _Lists:
    """A batch's list pieces, user by user (``rows``): what the array pass sums and ranks."""

    knn_ids: list[np.ndarray] = field(default_factory=list)
    knn_sims: list[np.ndarray] = field(default_factory=list)
    knn_decay: list[float] = field(default_factory=list)
    knn_rows: list[int] = field(default_factory=list)
    knn_sources: list[str] = field(default_factory=list)
    markov_ids: list[np.ndarray] = field(default_factory=list)
    markov_probs: list[np.ndarray] = field(default_factory=list)
    markov_rows: list[int] = field(default_factory=list)
    seen_ids: list[int] = field(default_factory=list)
    seen_rows: list[int] = field(default_factory=list)


def _gather(
    histories: Sequence[Sequence[str]],
    neighbors: Mapping[str, Sequence[tuple[str, float]]],
    successors: Mapping[str, Sequence[tuple[str, float]]] | None,
    recent: int,
    recency_decay: float,
    index: ListIndex,
) -> tuple[_Lists, list[str | None]]:
    """Each user's seen ids, recent items' neighbour lists (with their recency decay, newest
    first) and last item's successor list, plus each user's last item."""
    out = _Lists()
    lasts: list[str | None] = []
    for row, history in enumerate(histories):
        for age, source in enumerate(reversed(history[-recent:])):
            lst = neighbors.get(source)
            if lst:
                ids, sims = index.arrays(source, lst)
                out.knn_ids.append(ids)
                out.knn_sims.append(sims)
                out.knn_decay.append(recency_decay**age)
                out.knn_rows.append(row)
                out.knn_sources.append(source)
        last = history[-1] if history else None
        lasts.append(last)
        nexts = successors.get(last) if successors is not None and last is not None else None
        if nexts and last:
            ids, probs = index.arrays("\x00next:" + last, nexts)
            out.markov_ids.append(ids)
            out.markov_probs.append(probs)
            out.markov_rows.append(row)
    # After every list is converted: a seen item still without an id is in no list, so it
    # needs no exclusion (and no id).
    known = index.ids.get
    for row, history in enumerate(histories):
        seen_ids = [found for found in map(known, set(history)) if found is not None]
        out.seen_ids.extend(seen_ids)
        out.seen_rows.extend([row] * len(seen_ids))
    return out, lasts


def _int64(values: Sequence[int]) -> np.ndarray:
    return np.array(values, np.int64)


def _ranked_blend(
    lists: _Lists, users: int, vocab: int, n: int, markov_weight: float, items: Sequence[str]
) -> tuple[list[int], list[int], list[float], list[int]]:
    """The whole batch's blend in a fixed number of array calls: per ranked entry, best first
    by user, ``(row, item id, score, knn source position or -1 for the markov reason)``."""
    knn_lengths = _int64([ids.shape[0] for ids in lists.knn_ids])
    markov_lengths = _int64([ids.shape[0] for ids in lists.markov_ids])
    n_knn, n_markov = int(knn_lengths.sum()), int(markov_lengths.sum())
    if n_knn + n_markov == 0 or n <= 0:
        return [], [], [], []
    ids = np.concatenate([*lists.knn_ids, *lists.markov_ids, _int64(lists.seen_ids)])
    rows = np.concatenate(
        [
            np.repeat(_int64(lists.knn_rows), knn_lengths),
            np.repeat(_int64(lists.markov_rows), markov_lengths),
            _int64(lists.seen_rows),
        ]
    )
    group, keys = _groups(rows * vocab + ids, users * vocab)
    size = keys.shape[0]
    knn_group, markov_group = group[:n_knn], group[n_knn : n_knn + n_markov]
    knn_weights = np.concatenate([np.empty(0), *lists.knn_sims]) * np.repeat(
        np.array(lists.knn_decay, np.float64), knn_lengths
    )
    knn = np.bincount(knn_group, weights=knn_weights, minlength=size)
    markov = np.bincount(
        markov_group, weights=np.concatenate([np.empty(0), *lists.markov_probs]), minlength=size
    )
    has_knn, has_markov, seen = np.zeros(size, bool), np.zeros(size, bool), np.zeros(size, bool)
    has_knn[knn_group] = True
    has_markov[markov_group] = True
    seen[group[n_knn + n_markov :]] = True
    candidates = np.flatnonzero((has_knn | has_markov) & ~seen)
    if not candidates.shape[0]:
        return [], [], [], []
    keys, has_knn, has_markov = keys[candidates], has_knn[candidates], has_markov[candidates]
    bounds = np.searchsorted(keys, np.arange(users + 1) * vocab)  # keys are sorted by row
    lengths = np.diff(bounds)
    cand_rows = np.repeat(np.arange(users), lengths)
    cand_ids = keys - np.repeat(np.arange(users) * vocab, lengths)
    segments = bounds[:-1][lengths > 0], lengths[lengths > 0]
    from_knn = _scaled(knn[candidates], has_knn, *segments, KNN_WEIGHT)
    from_markov = _scaled(markov[candidates], has_markov, *segments, markov_weight)
    totals = from_knn + from_markov
    best = _top_n(cand_rows, totals, cand_ids, items, n, segments)
    sources = _strongest_sources(knn_group, knn_weights, knn_lengths, candidates[best], size)
    sources[~(has_knn[best] & (from_knn[best] >= from_markov[best]))] = -1
    return (
        cand_rows[best].tolist(),
        cand_ids[best].tolist(),
        totals[best].tolist(),
        sources.tolist(),
    )


def _strongest_sources(
    knn_group: np.ndarray,
    knn_weights: np.ndarray,
    knn_lengths: np.ndarray,
    wanted: np.ndarray,
    size: int,
) -> np.ndarray:
    """For each ``wanted`` group, the knn list (its position among all the batch's lists)
    contributing most to it, the first (a user's newest) on a tie; ``len(knn_lengths)`` for a
    group no list contributes to.

    >>> _strongest_sources(np.array([0, 1, 1]), np.array([0.5, 0.1, 0.3]), np.array([2, 1]),
    ...                    np.array([1, 0, 2]), 3).tolist()
    [1, 0, 2]
    """
    slot = np.full(size, -1, np.int64)
    slot[wanted] = np.arange(wanted.shape[0])
    slots = slot[knn_group]
    entries = np.flatnonzero(slots >= 0)
    slots, weights = slots[entries], knn_weights[entries]
    top = np.full(wanted.shape[0], -np.inf)
    np.maximum.at(top, slots, weights)
    tied = weights == top[slots]
    starts = np.cumsum(knn_lengths) - knn_lengths
    lists = np.searchsorted(starts, entries[tied], side="right") - 1
    first = np.full(wanted.shape[0], knn_lengths.shape[0], np.int64)
    np.minimum.at(first, slots[tied], lists)
    return first


def score_users(
    histories: Mapping[str, Sequence[str]],
    neighbors: Mapping[str, Sequence[tuple[str, float]]],
    trending: Sequence[tuple[str, float]],
    n: int,
    *,
    successors: Mapping[str, Sequence[tuple[str, float]]] | None = None,
    recent: int = 20,
    recency_decay: float = 0.9,
    markov_weight: float = MARKOV_WEIGHT,
    index: ListIndex | None = None,
) -> dict[str, list[Recommendation]]:
    """:func:`score_user` for every user of a batch at once (the same lists, bit for bit).

    Scored one by one, a user cost ~25 small numpy calls, and numpy's per-call overhead was
    most of the worker's scoring time. Here each (user, item) pair is one int64 key
    ``row * len(index.items) + item id``: the batch's sums, exclusions, per-user scaling and
    top-``n`` are a fixed number of array calls, and only the trending fill and building the
    :class:`Recommendation` objects stay per user.

    >>> nb = {"a": [("x", 0.9)], "b": [("x", 0.5), ("a", 0.9)]}
    >>> recs = score_users({"u": ["b", "a"], "v": ["a"], "w": []}, nb, [("t", 3.0)], 2)
    >>> {user: [r.item_id for r in lst] for user, lst in recs.items()}
    {'u': ['x', 't'], 'v': ['x', 't'], 'w': ['t']}
    """
    index = index if index is not None else ListIndex()
    users = list(histories)
    lists, lasts = _gather(
        [histories[user] for user in users], neighbors, successors, recent, recency_decay, index
    )
    items = index.items
    ranked = _ranked_blend(lists, len(users), len(items), n, markov_weight, items)
    out: list[list[Recommendation]] = [[] for _ in users]
    sources = lists.knn_sources
    reasons: dict[int, str] = {}  # a batch's entries share few reasons: format each once
    for row, item, score, source in zip(*ranked, strict=True):
        key = source if source >= 0 else -1 - row
        reason = reasons.get(key)
        if reason is None:
            reason = reasons[key] = (
                f"because you viewed {sources[source]}"
                if source >= 0
                else f"often next after {lasts[row]}"
            )
        out[row].append(Recommendation(items[item], score, reason))
    for user, recs in zip(users, out, strict=True):
        if len(recs) >= n:
            continue
        taken = set(histories[user]) | {r.item_id for r in recs}
        for item, score in trending:
            if len(recs) >= n:
                break
            if item not in taken:
                recs.append(Recommendation(item, score, TRENDING_REASON))
                taken.add(item)
    return dict(zip(users, out, strict=True))


def score_user(
    history: Sequence[str],
    neighbors: Mapping[str, Sequence[tuple[str, float]]],
    trending: Sequence[tuple[str, float]],
    n: int,
    *,
    successors: Mapping[str, Sequence[tuple[str, float]]] | None = None,
    recent: int = 20,
    recency_decay: float = 0.9,
    markov_weight: float = MARKOV_WEIGHT,
    index: ListIndex | None = None,
) -> list[Recommendation]:
    """Top-``n`` of the online model's fixed blend of item-kNN and transitions, then trending.

    Two sources, each scaled to max 1 over the user's candidates (as the online recommender
    scales its feature rows): **knn**, the sum over the user's ``recent`` items of
    ``recency_decay ** age * cosine`` from their published neighbour lists, and **markov**,
    ``P(next | last item)`` from the last item's published successors; the score is
    ``KNN_WEIGHT * knn + markov_weight * markov``, ties by item id. The reason names the source
    that contributed most: the recent item with the largest knn contribution ("because you
    viewed a"; the newer one on a tie) or the last item ("often next after a"). Seen items are
    excluded; the list is filled with trending items ("trending now"). Pass a long-lived
    ``index`` (:class:`ListIndex`) to convert each list once rather than per call. One user's
    :func:`score_users` (a batch should call that once).

    >>> nb = {"a": [("x", 0.9)], "b": [("x", 0.5), ("a", 0.9)]}
    >>> nxt = {"a": [("y", 1.0)]}
    >>> [(r.item_id, r.reason) for r in score_user(["b", "a"], nb, [("t", 3.0)], 3,
    ...                                             successors=nxt)]
    [('x', 'because you viewed a'), ('y', 'often next after a'), ('t', 'trending now')]
    """
    return score_users(
        {"": history},
        neighbors,
        trending,
        n,
        successors=successors,
        recent=recent,
        recency_decay=recency_decay,
        markov_weight=markov_weight,
        index=index,
    )[""]


def blend_session(
    cf: Sequence[Recommendation],
    session: Sequence[tuple[str, float]],
    seen: Iterable[str],
    n: int,
    slots: int,
) -> list[Recommendation]:
    """Interleave up to ``slots`` session-model items into the CF list (positions 1, 3, 5, ...).

    Session items already in the CF list keep their place but take the session reason only
    if the CF reason was the trending fallback. Scores are the position's rank score
    ``1 / (1 + position)``, so the blended list stays sorted.

    >>> cf = [Recommendation("x", 2.0, "because you viewed a"),
    ...       Recommendation("t", 1.0, "trending now")]
    >>> [(r.item_id, r.reason) for r in blend_session(cf, [("s", 0.4)], ["a"], 3, 2)]
    [('x', 'because you viewed a'), ('s', 'based on your current session'), ('t', 'trending now')]
    """
    excluded = set(seen)
    cf_ids = {r.item_id for r in cf}
    extra = [item for item, _ in session if item not in excluded and item not in cf_ids][:slots]
    merged: list[tuple[str, str]] = []
    cf_iter = iter(cf)
    extra_iter = iter(extra)
    session_ids = {item for item, _ in session}
    while len(merged) < n:
        pick_session = len(merged) % 2 == 1
        nxt = next(extra_iter, None) if pick_session else None
        if nxt is not None:
            merged.append((nxt, SESSION_REASON))
            continue
        rec = next(cf_iter, None)
        if rec is None:
            rest = next(extra_iter, None)
            if rest is None:
                break
            merged.append((rest, SESSION_REASON))
            continue
        reason = rec.reason
        if reason == TRENDING_REASON and rec.item_id in session_ids:
            reason = SESSION_REASON
        merged.append((rec.item_id, reason))
    return [Recommendation(item, 1.0 / (1 + i), reason) for i, (item, reason) in enumerate(merged)]
