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
- the user side then scores users from the published neighbour lists of their recent items
  (:func:`score_user`), falls back to trending, and blends in the session model
  (:func:`blend_session`).

Everything here is plain data in, plain data out: no Faust, no Redis.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import orjson

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
    >>> ItemDelta.from_json(d.to_json()) == d
    True
    """

    norm: float = 0.0
    pairs: dict[str, float] = field(default_factory=dict)
    src: tuple[int, int] | None = None
    succ: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"n": self.norm, "p": self.pairs}
        if self.src is not None:
            body["s"] = list(self.src)
        if self.succ:
            body["x"] = self.succ
        return body

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ItemDelta:
        src = data.get("s")
        return cls(
            float(data.get("n", 0.0)),  # type: ignore[arg-type]
            {str(k): float(v) for k, v in data.get("p", {}).items()},  # type: ignore[attr-defined]
            (int(src[0]), int(src[1])) if src else None,  # type: ignore[index]
            {str(k): float(v) for k, v in data.get("x", {}).items()},  # type: ignore[attr-defined]
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> ItemDelta:
        return cls.from_dict(orjson.loads(raw))


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
    out: dict[str, ItemDelta] = {}
    for item, weight, pairs in learned:
        own = out.setdefault(item, ItemDelta())
        own.norm += weight * weight
        for other, w in pairs:
            own.pairs[other] = own.pairs.get(other, 0.0) + w
            back = out.setdefault(other, ItemDelta())
            back.pairs[item] = back.pairs.get(item, 0.0) + w
    for previous, item in moves:
        row = out.setdefault(previous, ItemDelta())
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
    base = dict(row) if row else {}
    marks = dict(base.get(HWM_FIELD, {}))  # type: ignore[call-overload]
    if delta.src is not None:
        part, offset = str(delta.src[0]), delta.src[1]
        if part in marks and offset <= marks[part]:
            return base or {"n": 0.0, "p": {}, HWM_FIELD: marks}
        marks[part] = offset
    pairs = dict(base.get("p", {}))  # type: ignore[call-overload]
    for other, w in delta.pairs.items():
        pairs[other] = pairs.get(other, 0.0) + w
    out = {"n": float(base.get("n", 0.0)) + delta.norm, "p": _capped(pairs, max_pairs)}
    out[HWM_FIELD] = marks
    succ = dict(base.get(SUCC_FIELD, {}))  # type: ignore[call-overload]
    if delta.succ or succ:
        for other, w in delta.succ.items():
            succ[other] = succ.get(other, 0.0) + w
        out[SUCC_FIELD] = _capped(succ, max_successors)
        out[SUCC_TOTAL_FIELD] = float(base.get(SUCC_TOTAL_FIELD, 0.0)) + sum(delta.succ.values())  # type: ignore[arg-type]
    return out


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


def _summed(
    parts: list[tuple[np.ndarray, np.ndarray]], excluded: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct ids of the parts and their summed weights, ``excluded`` ids left out."""
    if not parts:
        return np.empty(0, np.int64), np.empty(0)
    ids = np.concatenate([p[0] for p in parts])
    weights = np.concatenate([p[1] for p in parts])
    distinct, inverse = np.unique(ids, return_inverse=True)
    totals = np.bincount(inverse, weights=weights, minlength=distinct.shape[0])
    keep = ~np.isin(distinct, excluded) if excluded.shape[0] else slice(None)
    return distinct[keep], totals[keep]


def _strongest_sources(
    parts: list[tuple[np.ndarray, np.ndarray]], wanted: np.ndarray
) -> dict[int, int]:
    """For each ``wanted`` id, the position of the part contributing most to it (the first,
    i.e. newest, part on a tie).

    >>> a, b = np.array([1, 2]), np.array([2])
    >>> _strongest_sources([(a, np.array([0.5, 0.1])), (b, np.array([0.3]))], np.array([1, 2]))
    {1: 0, 2: 1}
    """
    if not parts or not wanted.shape[0]:
        return {}
    ids = np.concatenate([p[0] for p in parts])
    weights = np.concatenate([p[1] for p in parts])
    positions = np.repeat(np.arange(len(parts)), [p[0].shape[0] for p in parts])
    keep = np.isin(ids, wanted)
    ids, weights, positions = ids[keep], weights[keep], positions[keep]
    order = np.lexsort((positions, -weights, ids))
    firsts, at = np.unique(ids[order], return_index=True)
    return dict(zip(firsts.tolist(), positions[order][at].tolist(), strict=True))


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
    ``index`` (:class:`ListIndex`) to convert each list once rather than per call.

    >>> nb = {"a": [("x", 0.9)], "b": [("x", 0.5), ("a", 0.9)]}
    >>> nxt = {"a": [("y", 1.0)]}
    >>> [(r.item_id, r.reason) for r in score_user(["b", "a"], nb, [("t", 3.0)], 3,
    ...                                             successors=nxt)]
    [('x', 'because you viewed a'), ('y', 'often next after a'), ('t', 'trending now')]
    """
    index = index if index is not None else ListIndex()
    seen = set(history)
    excluded = np.fromiter((index.id_of(item) for item in seen), np.int64, len(seen))
    sources: list[str] = []  # recent items with a list, newest first
    knn_parts = []
    for age, source in enumerate(reversed(history[-recent:])):
        lst = neighbors.get(source)
        if lst:
            ids, sims = index.arrays(source, lst)
            knn_parts.append((ids, sims * recency_decay**age))
            sources.append(source)
    knn_ids, knn = _summed(knn_parts, excluded)
    last = history[-1] if history else None
    nexts = successors.get(last) if successors is not None and last is not None else None
    markov_parts = [index.arrays("\x00next:" + last, nexts)] if nexts and last else []
    markov_ids, markov = _summed(markov_parts, excluded)
    if knn.shape[0] and knn.max() > 0:
        knn = knn * (KNN_WEIGHT / knn.max())
    if markov.shape[0] and markov.max() > 0:
        markov = markov * (markov_weight / markov.max())
    ids, inverse = np.unique(np.concatenate([knn_ids, markov_ids]), return_inverse=True)
    from_knn = np.bincount(inverse[: knn.shape[0]], weights=knn, minlength=ids.shape[0])
    from_markov = np.bincount(inverse[knn.shape[0] :], weights=markov, minlength=ids.shape[0])
    totals = from_knn + from_markov
    if totals.shape[0] > n:
        # every candidate tied with the n-th best, so the id tie-break below sees them all
        threshold = np.partition(totals, totals.shape[0] - n)[totals.shape[0] - n]
        picked = np.flatnonzero(totals >= threshold)
    else:
        picked = np.arange(totals.shape[0])
    items = index.items
    ranked = sorted((-float(totals[j]), items[ids[j]], int(j)) for j in picked)[:n]
    best = _strongest_sources(knn_parts, ids[[j for _, _, j in ranked]])
    out = []
    for negative, item, j in ranked:
        position = best.get(int(ids[j]))
        if position is not None and from_knn[j] >= from_markov[j]:
            reason = f"because you viewed {sources[position]}"
        else:
            reason = f"often next after {last}"
        out.append(Recommendation(item, -negative, reason))
    taken = seen | {r.item_id for r in out}
    for item, score in trending:
        if len(out) >= n:
            break
        if item not in taken:
            out.append(Recommendation(item, score, TRENDING_REASON))
            taken.add(item)
    return out


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
