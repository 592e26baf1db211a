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

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from models.online.cooccurrence import pair_weights
from stream_app.cache.base import Recommendation

SESSION_REASON = "based on your current session"
TRENDING_REASON = "trending now"
#: key of a row's per-source-partition high-water marks (see :func:`apply_delta`)
HWM_FIELD = "o"


@dataclass(slots=True)
class ItemDelta:
    """Increments for one item's row from one user-side batch: its squared-norm increment and
    co-occurrence increments with other items. ``src`` = (source partition, last source
    offset) that produced it, so the item side can skip a delta it already applied.

    >>> d = ItemDelta(norm=1.0, pairs={"b": 2.0}, src=(0, 41))
    >>> ItemDelta.from_json(d.to_json()) == d
    True
    """

    norm: float = 0.0
    pairs: dict[str, float] = field(default_factory=dict)
    src: tuple[int, int] | None = None

    def to_json(self) -> bytes:
        body: dict[str, object] = {"n": self.norm, "p": self.pairs}
        if self.src is not None:
            body["s"] = list(self.src)
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> ItemDelta:
        data = json.loads(raw)
        src = data.get("s")
        return cls(
            float(data.get("n", 0.0)),
            {str(k): float(v) for k, v in data.get("p", {}).items()},
            (int(src[0]), int(src[1])) if src else None,
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


def deltas_by_item(
    learned: Iterable[tuple[str, float, list[tuple[str, float]]]],
) -> dict[str, ItemDelta]:
    """Aggregate a batch's events into one delta per touched item (both directions of a pair).

    >>> d = deltas_by_item([("b", 2.0, [("a", 2.0)])])
    >>> d["b"].norm, d["b"].pairs, d["a"].pairs
    (4.0, {'a': 2.0}, {'b': 2.0})
    """
    out: dict[str, ItemDelta] = {}
    for item, weight, pairs in learned:
        own = out.setdefault(item, ItemDelta())
        own.norm += weight * weight
        for other, w in pairs:
            own.pairs[other] = own.pairs.get(other, 0.0) + w
            back = out.setdefault(other, ItemDelta())
            back.pairs[item] = back.pairs.get(item, 0.0) + w
    return out


def apply_delta(row: Mapping[str, object] | None, delta: ItemDelta, max_pairs: int) -> dict:
    """The item's row after ``delta``; unchanged if its ``src`` offset was applied already.

    The row remembers, per source partition, the last source offset applied: a delta resent
    after a restart is skipped (idempotent). The co-occurrence row keeps its ``max_pairs``
    heaviest entries (the memory bound, like ``ItemSimilarity``'s capped rows).

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
    if len(pairs) > max_pairs:
        pairs = dict(sorted(pairs.items(), key=lambda p: (-p[1], p[0]))[:max_pairs])
    return {"n": float(base.get("n", 0.0)) + delta.norm, "p": pairs, HWM_FIELD: marks}  # type: ignore[arg-type]


def neighbor_list(
    row: Mapping[str, object], norm_a: float, norms: Mapping[str, float], m: int
) -> list[tuple[str, float]]:
    """Top-``m`` (item, cosine) of a row: ``C(a, b) / sqrt(N(a) N(b))``, ties by item id.

    An item whose norm is not known yet (its own delta not applied) is left out.

    >>> neighbor_list({"p": {"b": 2.0, "c": 1.0}}, 4.0, {"b": 4.0, "c": 1.0}, 5)
    [('b', 0.5), ('c', 0.5)]
    """
    out = []
    for other, c in row.get("p", {}).items():  # type: ignore[attr-defined]
        nb = norms.get(other, 0.0)
        if nb > 0 and norm_a > 0:
            out.append((other, c / math.sqrt(norm_a * nb)))
    out.sort(key=lambda p: (-p[1], p[0]))
    return out[:m]


def score_user(
    history: Sequence[str],
    neighbors: Mapping[str, Sequence[tuple[str, float]]],
    trending: Sequence[tuple[str, float]],
    n: int,
    *,
    recent: int = 20,
    recency_decay: float = 0.9,
) -> list[Recommendation]:
    """Item-kNN top-``n`` from the neighbours of the user's ``recent`` items, then trending.

    The score of a candidate is the sum over recent items of ``recency_decay ** age * sim``
    (the online recommender's knn source); its reason names the recent item that contributed
    most. Seen items are excluded; the list is filled with trending items ("trending now").

    >>> nb = {"a": [("x", 0.9), ("b", 0.5)]}
    >>> [(r.item_id, r.reason) for r in score_user(["b", "a"], nb, [("t", 3.0)], 3)]
    [('x', 'because you viewed a'), ('t', 'trending now')]
    """
    seen = set(history)
    totals: dict[str, float] = {}
    best: dict[str, tuple[float, str]] = {}
    window = history[-recent:]
    for age, source in enumerate(reversed(window)):
        factor = recency_decay**age
        for other, sim in neighbors.get(source, ()):
            if other in seen:
                continue
            contribution = factor * sim
            totals[other] = totals.get(other, 0.0) + contribution
            if contribution > best.get(other, (-1.0, ""))[0]:
                best[other] = (contribution, source)
    ranked = sorted(totals.items(), key=lambda p: (-p[1], p[0]))[:n]
    out = [
        Recommendation(item, score, f"because you viewed {best[item][1]}") for item, score in ranked
    ]
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
