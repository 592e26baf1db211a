"""The stream model's scoring: a batch's candidates, their features, the ranker's order, reasons.

Candidates come from the lists the item side publishes (each recent item's neighbours, the
successors of the last items) and from the trending list; each gets one value per feature of
:data:`FEATURES`, and a per-user weight vector (a partition's River ranker, or the fixed blend
while it is young) orders them. The worker scores a micro-batch of users with one call,
``StreamModel`` one user per event: the same function either way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Any, NamedTuple

import numpy as np

from models.online.stream.arrays import ListIndex, groups, scaled, segments, top_n, top_pool
from models.online.stream.content import (
    ItemContent,
    Profiles,
    cold_entries,
    content_reason,
    content_values,
    profiles,
)

SESSION_REASON = "based on your current session"
TRENDING_REASON = "trending now"

#: The ranking features, in the order of a weight vector. ``knn``: sum over the user's recent
#: items of ``recency_decay ** age * cosine``; ``markov``: P(next | last item); both scaled to
#: max 1 per user. ``markov_p``: the same probability unscaled (a confident transition against
#: a weak one); ``markov_skip``: transitions from the items before the last (``skip_decay`` per
#: step back) and from the user's path position (:func:`path_position`) when that is not the
#: last item; ``popularity``: ``log1p(trending / mean trending)``, scaled to max 1;
#: ``content``: cosine of the user's category profile and the item's (:mod:`.content`).
FEATURES: tuple[str, ...] = ("knn", "markov", "markov_p", "markov_skip", "popularity", "content")
#: Weights used until a ranker has learned enough (``StreamRanker.min_trained``).
FIXED_BLEND: tuple[float, ...] = (1.0, 0.3, 0.0, 0.0, 0.15, 0.1)


class Recommendation(NamedTuple):
    """One recommended item with the score it was ranked by and a human-readable reason.

    A named tuple: the worker builds top-N of them for every user of every batch, and a
    frozen dataclass's ``__init__`` costs one ``object.__setattr__`` per field.
    """

    item_id: str
    score: float
    reason: str

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON object of one item, as cached and served by the API."""
        return {"item_id": self.item_id, "score": round(self.score, 6), "reason": self.reason}


@dataclass(frozen=True, slots=True)
class ScoringParams:
    """How many of a user's items each feature reads (the constructor is the configuration)."""

    recent: int = 20
    recency_decay: float = 0.9
    skip_steps: int = 3
    skip_decay: float = 0.5
    resume_window: int = 10
    #: top trending items every user gets as candidates
    trending_candidates: int = 50
    #: the head of each recent item's neighbour list that scoring reads (lists are published
    #: best first, up to ``NEIGHBORS_M``)
    neighbors_per_item: int = 100
    #: cold catalog items (no stream signal yet) each user gets, closest to her profile first
    cold_candidates: int = 10
    #: the place (0-based) of every list that goes to the row's best cold item, whatever the
    #: ranker scores it (exploration: a new item's content score alone rarely wins a place
    #: against items with a history); None: no reserved place
    cold_slot: int | None = None

    def neighbor_sources(self, history: Sequence[str]) -> Sequence[str]:
        """The items whose neighbour lists score ``history``."""
        return history[-self.recent :]

    def successor_sources(self, history: Sequence[str]) -> Sequence[str]:
        """The items whose successor lists score ``history`` (the last, the skipped, the path)."""
        return history[-max(self.resume_window, self.skip_steps + 1) :]


def path_position(
    items: Sequence[str], successors: Mapping[str, Sequence[tuple[str, float]]]
) -> str:
    """Where a sequence stands on its learned path, skipping detours.

    The first item is the position; an item that is the position's top successor moves it
    there, any other item is a detour that leaves it (a session that detours often resumes).

    >>> nexts = {"a": [("b", 0.9)], "b": [("c", 0.8)]}
    >>> path_position(["a", "b", "x"], nexts), path_position(["a", "b", "c"], nexts)
    ('b', 'c')
    """
    position = items[0]
    for item in items[1:]:
        nexts = successors.get(position)
        if nexts and nexts[0][0] == item:
            position = item
    return position


def popularity_values(trending: Sequence[tuple[str, float]]) -> np.ndarray:
    """The ``popularity`` feature of each trending item: ``log1p(score / mean)``, max 1.

    >>> popularity_values([("a", 3.0), ("b", 1.0)]).round(3).tolist()
    [1.0, 0.443]
    """
    scores = np.maximum(np.array([s for _, s in trending], np.float64), 0.0)
    if not scores.shape[0] or scores.max() <= 0:
        return np.zeros(scores.shape[0])
    values = np.log1p(scores / scores.mean())
    return values / values.max()


@dataclass(slots=True)
class _Pieces:
    """A batch's list pieces, user by user (``rows``), before the array pass: each piece is a
    list's span in the :class:`ListIndex` pool. The knn pieces are arrays (one per recent item
    of every row, newest first); their source is an index into ``knn_names``."""

    knn_starts: np.ndarray
    knn_lengths: np.ndarray
    knn_decay: np.ndarray
    knn_rows: np.ndarray
    knn_source: np.ndarray
    knn_names: list[str]
    markov_starts: list[int] = field(default_factory=list)
    markov_lengths: list[int] = field(default_factory=list)
    markov_rows: list[int] = field(default_factory=list)
    skip_starts: list[int] = field(default_factory=list)
    skip_lengths: list[int] = field(default_factory=list)
    skip_scale: list[float] = field(default_factory=list)
    skip_rows: list[int] = field(default_factory=list)


def _knn_pieces(
    histories: Sequence[Sequence[str]],
    neighbors: Mapping[str, Sequence[tuple[str, float]]],
    params: ScoringParams,
    index: ListIndex,
) -> _Pieces:
    """The neighbour-list pieces of every row, in row then age order, with array passes over
    the batch's distinct recent items: a learning batch has one row per event and ``recent``
    items per row, and a Python step per (row, item) was the worker's largest own cost."""
    recent = [params.neighbor_sources(h)[::-1] for h in histories]
    counts = np.fromiter(map(len, recent), np.int64, len(recent))
    flat = list(chain.from_iterable(recent))
    names = list(dict.fromkeys(flat))
    code = {name: k for k, name in enumerate(names)}
    starts = np.zeros(len(names), np.int64)
    lengths = np.zeros(len(names), np.int64)
    head = params.neighbors_per_item
    for k, name in enumerate(names):
        lst = neighbors.get(name)
        if lst:
            starts[k], length = index.span(name, lst)
            lengths[k] = min(length, head)
    source = np.fromiter(map(code.__getitem__, flat), np.int64, len(flat))
    rows = np.repeat(np.arange(len(recent), dtype=np.int64), counts)
    ages = np.arange(len(flat), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    keep = lengths[source] > 0
    source, rows, ages = source[keep], rows[keep], ages[keep]
    # the same float as ``decay ** age`` (Python's pow), one per distinct age
    powers = np.array([params.recency_decay**age for age in range(int(counts.max(initial=0)))])
    return _Pieces(starts[source], lengths[source], powers[ages], rows, source, names)


def _gather(
    histories: Sequence[Sequence[str]],
    neighbors: Mapping[str, Sequence[tuple[str, float]]],
    successors: Mapping[str, Sequence[tuple[str, float]]],
    params: ScoringParams,
    index: ListIndex,
) -> _Pieces:
    out = _knn_pieces(histories, neighbors, params, index)
    skip_decay, span = params.skip_decay, index.span
    for row, history in enumerate(histories):
        if not history:
            continue
        last = history[-1]
        nexts = successors.get(last)
        if nexts:
            start, length = span("\x00next:" + last, nexts)
            out.markov_starts.append(start)
            out.markov_lengths.append(length)
            out.markov_rows.append(row)
        earlier = list(history[-1 - params.skip_steps : -1][::-1])
        scales = [skip_decay**age for age in range(len(earlier))]
        position = path_position(history[-params.resume_window :], successors)
        if position != last:
            earlier.append(position)
            scales.append(1.0)
        for item, scale in zip(earlier, scales, strict=True):
            lst = successors.get(item)
            if lst:
                start, length = span("\x00next:" + item, lst)
                out.skip_starts.append(start)
                out.skip_lengths.append(length)
                out.skip_scale.append(scale)
                out.skip_rows.append(row)
    return out


def _int64(values: Iterable[int]) -> np.ndarray:
    return np.fromiter(values, np.int64)


@dataclass(slots=True)
class Candidates:
    """A batch's candidate (user row, item) entries, by row then item id, with their features.

    ``features`` is ``(len(FEATURES), len(ids))``; row ``r``'s entries are
    ``bounds[r]:bounds[r + 1]``. The knn fields keep what a reason needs (which recent item
    contributed most).
    """

    users: int
    vocab: int
    rows: np.ndarray
    ids: np.ndarray
    features: np.ndarray
    bounds: np.ndarray
    groups: np.ndarray  # each entry's group among all the batch's (row, item) keys
    knn_group: np.ndarray
    knn_weights: np.ndarray
    knn_lengths: np.ndarray
    knn_source: np.ndarray  # each knn list's recent item: an index into knn_names
    knn_names: list[str]
    popularity: np.ndarray  # the popularity feature by item id (0 outside the trending list)
    profile: Profiles | None = None  # the rows' content profiles (None: no catalog)
    content: ItemContent | None = None
    #: the cold candidates (:func:`cold_entries`): by row, the closest first
    cold_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    cold_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def size(self) -> int:
        return int(self.ids.shape[0])

    def segments(self) -> tuple[np.ndarray, np.ndarray]:
        """(start, length) of each row that has candidates."""
        lengths = np.diff(self.bounds)
        return self.bounds[:-1][lengths > 0], lengths[lengths > 0]

    def totals(self, weights: np.ndarray) -> np.ndarray:
        """Each entry's score under its row's weight vector (``weights``: users x features)."""
        return np.einsum("fc,cf->c", self.features, weights[self.rows])

    def position(self, row: int, item_id: int | None) -> int | None:
        """The entry of ``(row, item)``, or None when the item is no candidate of the row."""
        if item_id is None:
            return None
        lo, hi = int(self.bounds[row]), int(self.bounds[row + 1])
        at = lo + int(np.searchsorted(self.ids[lo:hi], item_id))
        return at if at < hi and int(self.ids[at]) == item_id else None


class _Entries(NamedTuple):
    """One source's (row, item) entries: every list repeated over its span, with the weight
    each entry adds to its feature (a knn similarity times its recency decay, a skip
    probability times its skip scale)."""

    ids: np.ndarray
    weights: np.ndarray
    rows: np.ndarray


class _Sums(NamedTuple):
    """Per group of (row, item): each list feature's sum, and whether a list gave one."""

    knn: np.ndarray
    has_knn: np.ndarray
    markov: np.ndarray
    has_markov: np.ndarray
    skip: np.ndarray


def _list_entries(pieces: _Pieces, index: ListIndex) -> tuple[_Entries, _Entries, _Entries]:
    """The knn, markov and skip entries of the batch, each source with one ``take``."""
    knn_ids, knn_sims = index.take(pieces.knn_starts, pieces.knn_lengths)
    markov_ids, markov_probs = index.take(pieces.markov_starts, pieces.markov_lengths)
    skip_ids, skip_probs = index.take(pieces.skip_starts, pieces.skip_lengths)
    markov_lengths = np.array(pieces.markov_lengths, np.int64)
    skip_lengths = np.array(pieces.skip_lengths, np.int64)
    skip_scale = np.array(pieces.skip_scale, np.float64)
    return (
        _Entries(
            knn_ids,
            knn_sims * np.repeat(pieces.knn_decay, pieces.knn_lengths),
            np.repeat(pieces.knn_rows, pieces.knn_lengths),
        ),
        _Entries(markov_ids, markov_probs, np.repeat(_int64(pieces.markov_rows), markov_lengths)),
        _Entries(
            skip_ids,
            skip_probs * np.repeat(skip_scale, skip_lengths),
            np.repeat(_int64(pieces.skip_rows), skip_lengths),
        ),
    )


def _seen_entries(
    histories: Sequence[Sequence[str]], index: ListIndex
) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, rows)`` of the histories' items that have an id.

    Called after every list is converted: a seen item without an id is in no list (nothing to
    drop). One C-level pass over every history's items: a learning batch has one history per
    event, up to ``history_len`` items each; a repeated item marks its key twice, harmlessly.
    """
    every_seen = np.fromiter(
        map(index.ids.get, chain.from_iterable(histories), repeat(-1)), np.int64
    )
    every_row = np.repeat(np.arange(len(histories), dtype=np.int64), [len(h) for h in histories])
    known_seen = every_seen >= 0
    return every_seen[known_seen], every_row[known_seen]


def _grouped(
    parts: Sequence[tuple[np.ndarray, np.ndarray]], users: int, vocab: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """Each ``(ids, rows)`` part's entry groups among the batch's distinct (row, item) keys,
    and those keys (sorted, packed as ``row * vocab + id``)."""
    ids = np.concatenate([part_ids for part_ids, _ in parts])
    rows = np.concatenate([part_rows for _, part_rows in parts])
    group, keys = groups(rows * vocab + ids, max(users * vocab, 1))
    cut = np.cumsum([part_ids.shape[0] for part_ids, _ in parts[:-1]])
    return [group[lo:hi] for lo, hi in zip([0, *cut], [*cut, group.shape[0]], strict=True)], keys


def _group_sums(groups_of: Sequence[np.ndarray], entries: Sequence[_Entries], size: int) -> _Sums:
    """Each group's knn, markov and skip sums (one ``bincount`` each); ``groups_of`` and
    ``entries`` hold the three sources in that order."""
    (knn_group, markov_group, skip_group), (knn, markov, skip) = groups_of, entries
    has_knn, has_markov = np.zeros(size, bool), np.zeros(size, bool)
    has_knn[knn_group] = True
    has_markov[markov_group] = True
    return _Sums(
        np.bincount(knn_group, weights=knn.weights, minlength=size),
        has_knn,
        np.bincount(markov_group, weights=markov.weights, minlength=size),
        has_markov,
        np.bincount(skip_group, weights=skip.weights, minlength=size),
    )


def _unseen(listed_groups: Sequence[np.ndarray], seen_group: np.ndarray, size: int) -> np.ndarray:
    """The groups some list gives and the row's history does not hold: the candidates."""
    listed, seen = np.zeros(size, bool), np.zeros(size, bool)
    for group in listed_groups:
        listed[group] = True
    seen[seen_group] = True
    return np.flatnonzero(listed & ~seen)


def _features(
    sums: _Sums,
    chosen: np.ndarray,
    bounds: np.ndarray,
    lengths: np.ndarray,
    cand_ids: np.ndarray,
    popularity: np.ndarray,
) -> np.ndarray:
    """The ``(len(FEATURES), len(chosen))`` list features of the chosen groups, whose rows
    span ``bounds`` (``lengths`` entries each); ``cand_ids``: their item ids. The content row
    stays 0 here (:func:`content_values` fills it when there is a catalog)."""
    features = np.zeros((len(FEATURES), chosen.shape[0]))
    if chosen.shape[0]:
        starts, counts = bounds[:-1][lengths > 0], lengths[lengths > 0]
        features[0] = scaled(sums.knn[chosen], sums.has_knn[chosen], starts, counts, 1.0)
        features[1] = scaled(sums.markov[chosen], sums.has_markov[chosen], starts, counts, 1.0)
        features[2] = sums.markov[chosen]
        features[3] = sums.skip[chosen]
        features[4] = popularity[cand_ids]
    return features


def _cold_part(
    histories: Sequence[Sequence[str]],
    content: ItemContent | None,
    index: ListIndex,
    params: ScoringParams,
) -> tuple[Profiles | None, tuple[np.ndarray, np.ndarray]]:
    """The rows' content profiles and their cold candidates (none without a catalog)."""
    if content is None or not content:
        return None, (np.zeros(0, np.int64), np.zeros(0, np.int64))
    recent = [params.neighbor_sources(h)[::-1] for h in histories]
    profile = profiles(recent, params.recency_decay, content)
    cold = cold_entries(profile, len(histories), content, index, params.cold_candidates)
    return profile, cold


def _with_excluded(
    histories: Sequence[Sequence[str]], excluded: Sequence[Sequence[str]] | None
) -> Sequence[Sequence[str]]:
    """Each row's items that are never its candidates: its history, then its exclusions (the
    items its user said no to: they drop out like seen items but feed no list)."""
    if not excluded or not any(excluded):
        return histories
    return [[*h, *x] if x else h for h, x in zip(histories, excluded, strict=True)]


def candidates(
    histories: Sequence[Sequence[str]],
    neighbors: Mapping[str, Sequence[tuple[str, float]]],
    successors: Mapping[str, Sequence[tuple[str, float]]],
    trending: Sequence[tuple[str, float]],
    index: ListIndex,
    params: ScoringParams = ScoringParams(),
    excluded: Sequence[Sequence[str]] | None = None,
    content: ItemContent | None = None,
) -> Candidates:
    """Every user's candidates and features, in a fixed number of array calls for the batch.
    ``excluded``: per row, items that are no candidates although no list source (a dislike);
    ``content``: the catalog's categories, for the content feature and the cold candidates.

    >>> index = ListIndex()
    >>> c = candidates([["a"]], {"a": [("x", 0.5)]}, {"a": [("y", 1.0)]}, [("t", 2.0)], index)
    >>> [index.items[i] for i in c.ids], c.features[:, 0].tolist()   # x: knn only
    (['x', 'y', 't'], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    >>> c = candidates([["a"]], {"a": [("x", 0.5)]}, {}, [("t", 2.0)], index, excluded=[["x"]])
    >>> [index.items[i] for i in c.ids]
    ['t']
    """
    index.begin()
    pieces = _gather(histories, neighbors, successors, params, index)
    trend_ids, _ = index.arrays("\x00trending", trending)
    knn, markov, skip = _list_entries(pieces, index)
    profile, cold = _cold_part(histories, content, index, params)
    # after every list (and the cold pool) is converted
    seen_ids, seen_rows = _seen_entries(_with_excluded(histories, excluded), index)
    users, vocab = len(histories), len(index.items)
    popularity = np.zeros(vocab)
    popularity[trend_ids] = popularity_values(trending)
    shown = trend_ids[: params.trending_candidates]
    trend_rows = np.repeat(np.arange(users, dtype=np.int64), shown.shape[0])
    parts = [(e.ids, e.rows) for e in (knn, markov, skip)]
    parts += [(np.tile(shown, users), trend_rows), cold, (seen_ids, seen_rows)]
    part_groups, keys = _grouped(parts, users, vocab)
    size = keys.shape[0]
    sums = _group_sums(part_groups[:3], (knn, markov, skip), size)
    chosen = _unseen(part_groups[:5], part_groups[5], size)
    keys = keys[chosen]
    bounds = np.searchsorted(keys, np.arange(users + 1) * vocab)
    lengths = np.diff(bounds)
    cand_rows = np.repeat(np.arange(users, dtype=np.int64), lengths)
    cand_ids = keys - cand_rows * vocab
    features = _features(sums, chosen, bounds, lengths, cand_ids, popularity)
    if profile is not None and content is not None:
        features[5] = content_values(profile, content, index, cand_rows, cand_ids)
    return Candidates(
        users,
        vocab,
        cand_rows,
        cand_ids,
        features,
        bounds,
        chosen,
        part_groups[0],
        knn.weights,
        pieces.knn_lengths,
        pieces.knn_source,
        pieces.knn_names,
        popularity,
        profile,
        content,
        cold[0],
        cold[1],
    )


def _strongest_sources(cands: Candidates, wanted: np.ndarray) -> np.ndarray:
    """For each ``wanted`` group, the knn list (its position among the batch's lists)
    contributing most to it, the first (a user's newest) on a tie; ``len(knn_lengths)`` for a
    group no list contributes to."""
    size = int(cands.groups.max()) + 1 if cands.groups.shape[0] else 0
    size = max(size, int(cands.knn_group.max()) + 1 if cands.knn_group.shape[0] else 0)
    slot = np.full(size, -1, np.int64)
    slot[wanted] = np.arange(wanted.shape[0])
    slots = slot[cands.knn_group]
    entries = np.flatnonzero(slots >= 0)
    slots, weights = slots[entries], cands.knn_weights[entries]
    top = np.full(wanted.shape[0], -np.inf)
    np.maximum.at(top, slots, weights)
    tied = weights == top[slots]
    starts = np.cumsum(cands.knn_lengths) - cands.knn_lengths
    lists = np.searchsorted(starts, entries[tied], side="right") - 1
    first = np.full(wanted.shape[0], cands.knn_lengths.shape[0], np.int64)
    np.minimum.at(first, slots[tied], lists)
    return first


def ranked(cands: Candidates, weights: np.ndarray, n: int, index: ListIndex) -> np.ndarray:
    """Positions of each row's ``n`` best entries (score descending, then item id), by row."""
    if not cands.size or n <= 0:
        return np.empty(0, np.int64)
    return top_n(cands.rows, cands.totals(weights), cands.ids, index.items, n, cands.segments())


def recommendations(
    cands: Candidates,
    histories: Sequence[Sequence[str]],
    weights: np.ndarray,
    trending: Sequence[tuple[str, float]],
    n: int,
    index: ListIndex,
    excluded: Sequence[Sequence[str]] | None = None,
    cold_slot: int | None = None,
) -> list[list[Recommendation]]:
    """Each row's top-``n`` with scores and reasons, its best cold item at ``cold_slot``
    (:func:`_with_cold_slot`), filled up with trending items that are neither seen nor
    ``excluded`` (the rows' exclusions, as :func:`candidates` took them).

    The reason names the feature that contributed most: the recent item with the largest
    neighbour contribution ("because you viewed a"), the last item ("often next after a"), the
    one before it ("often after a"), or "trending now".

    >>> index = ListIndex()
    >>> hist = [["b", "a"]]
    >>> c = candidates(hist, {"a": [("x", 0.9)], "b": [("x", 0.5)]}, {}, [("t", 3.0)], index)
    >>> w = np.array([FIXED_BLEND])
    >>> [(r.item_id, r.reason) for r in recommendations(c, hist, w, [("t", 3.0)], 3, index)[0]]
    [('x', 'because you viewed a'), ('t', 'trending now')]
    """
    out: list[list[Recommendation]] = [[] for _ in histories]
    best = ranked(cands, weights, n, index)
    if best.shape[0]:
        rows = cands.rows[best]
        contributions = weights[rows] * cands.features[:, best].T
        strongest = np.argmax(contributions, axis=1)
        useless = contributions.max(axis=1) <= 0
        totals = contributions.sum(axis=1)
        knn_lists = _strongest_sources(cands, cands.groups[best])
        sources, names = cands.knn_source, cands.knn_names
        items = index.items
        reasons: dict[tuple[int, int], str] = {}  # a batch's entries share few reasons
        for j, (row, item, feature) in enumerate(
            zip(rows.tolist(), cands.ids[best].tolist(), strongest.tolist(), strict=True)
        ):
            history = histories[row]
            liked = None
            if feature == 5 and not useless[j] and cands.profile is not None:
                assert cands.content is not None
                liked = content_reason(cands.profile, cands.content, row, items[item])
            if liked is not None:
                reason = liked
            elif useless[j] or feature >= 4:
                reason = TRENDING_REASON
            elif feature == 0 and knn_lists[j] < len(sources):
                key = (0, int(knn_lists[j]))
                reason = reasons.get(key) or reasons.setdefault(
                    key, f"because you viewed {names[sources[key[1]]]}"
                )
            elif feature == 3 and len(history) >= 2:
                reason = f"often after {history[-2]}"
            else:
                reason = f"often next after {history[-1]}"
            out[row].append(Recommendation(items[item], float(totals[j]), reason))
    if cold_slot is not None and cands.cold_rows.shape[0]:
        _with_cold_slot(out, cands, histories, index, excluded, cold_slot, n)
    for row, recs in enumerate(out):
        if len(recs) >= n:
            continue
        taken = set(histories[row]) | {r.item_id for r in recs}
        if excluded:
            taken.update(excluded[row])
        for item, score in trending:
            if len(recs) >= n:
                break
            if item not in taken:
                recs.append(Recommendation(item, score, TRENDING_REASON))
                taken.add(item)
    return out


def _with_cold_slot(
    out: list[list[Recommendation]],
    cands: Candidates,
    histories: Sequence[Sequence[str]],
    index: ListIndex,
    excluded: Sequence[Sequence[str]] | None,
    at: int,
    n: int,
) -> None:
    """Each row's closest cold item that is neither listed, seen nor excluded goes to place
    ``at`` of its list (or its end, when shorter), scored between its neighbours so the list
    stays sorted; the list keeps ``n`` items."""
    assert cands.profile is not None and cands.content is not None
    starts = np.searchsorted(cands.cold_rows, np.arange(len(out) + 1))
    for row, recs in enumerate(out):
        lo, hi = int(starts[row]), int(starts[row + 1])
        if lo == hi:
            continue
        taken = {r.item_id for r in recs}.union(histories[row], excluded[row] if excluded else ())
        item = next((index.items[i] for i in cands.cold_ids[lo:hi].tolist()
                     if index.items[i] not in taken), None)  # fmt: skip
        if item is None:
            continue
        place = min(at, len(recs))
        above = recs[place - 1].score if place else 1.0
        below = recs[place].score if place < len(recs) else 0.0
        reason = content_reason(cands.profile, cands.content, row, item) or TRENDING_REASON
        recs.insert(place, Recommendation(item, (above + below) / 2, reason))
        del recs[n:]


def _mixed(seed: int, j: int) -> int:
    """The ``j``-th 64-bit pseudo-random number of ``seed`` (SplitMix64's finaliser)."""
    x = (seed + (j + 1) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


def _hard_pools(cands: Candidates, weights: np.ndarray, hard_pool: int) -> dict[int, list[int]]:
    """Each row's current top ``hard_pool`` entries (ties at the cut included, in entry order:
    :func:`top_pool`), by row; empty when ``hard_pool`` is 0."""
    if hard_pool <= 0:
        return {}
    hard = top_pool(cands.totals(weights), hard_pool, cands.segments())
    by_row: dict[int, list[int]] = {}
    if hard.shape[0]:
        hard_rows = cands.rows[hard]
        firsts, counts = segments(hard_rows)
        for s, c in zip(firsts.tolist(), counts.tolist(), strict=True):
            by_row[int(hard_rows[s])] = hard[s : s + c].tolist()
    return by_row


def _positive_entries(
    cands: Candidates, events: Sequence[tuple[int, str, int]], item_ids: Sequence[int | None]
) -> tuple[list[int], list[bool]]:
    """Every event's positive entry at once (entries are sorted by (row, item id)), and whether
    it is one: an unknown item, or one that is no candidate of its row, has none."""
    known = np.array([i is not None for i in item_ids], bool)
    keys = np.array(
        [row * cands.vocab + (i or 0) for (row, _, _), i in zip(events, item_ids, strict=True)],
        np.int64,
    )
    entry_keys = cands.rows * cands.vocab + cands.ids
    found = np.minimum(np.searchsorted(entry_keys, keys), max(entry_keys.shape[0] - 1, 0))
    found_ok = known & (entry_keys[found] == keys)
    return found.tolist(), found_ok.tolist()


def _negative_picks(
    cands: Candidates,
    events: Sequence[tuple[int, str, int]],
    positions: tuple[list[int], list[bool]],
    by_row: Mapping[int, Sequence[int]],
    n_negatives: int,
    outside_positives: bool,
) -> tuple[list[int], list[int], list[list[int]]]:
    """``(taught events, their positive entries, their negative entries)``: half the
    negatives from the row's hard pool (``by_row``), the rest uniformly from its candidates,
    each pick a pure function of the event's seed. A positive outside the candidates is -1."""
    n_hard = n_negatives // 2
    bounds = cands.bounds.tolist()
    taught: list[int] = []
    positives: list[int] = []
    picks: list[list[int]] = []
    for at, ((row, _, seed), position, hit) in enumerate(zip(events, *positions, strict=True)):
        positive = position if hit else -1
        lo, hi = bounds[row], bounds[row + 1]
        if positive < 0 and not outside_positives:
            continue
        if hi - lo < (1 if positive < 0 else 2):
            continue
        pool = [p for p in by_row.get(row, ()) if p != positive]
        negatives = [pool[_mixed(seed, j) % len(pool)] for j in range(n_hard)] if pool else []
        j = len(negatives)
        while len(negatives) < n_negatives:
            pick = lo + _mixed(seed, j) % (hi - lo)
            j += 1
            if pick != positive:
                negatives.append(pick)
        taught.append(at)
        positives.append(positive)
        picks.append(negatives)
    return taught, positives, picks


def _positive_rows(
    cands: Candidates, positives: list[int], item_ids: Sequence[int | None], taught: list[int]
) -> np.ndarray:
    """The positives' feature rows; an item that is no candidate (entry -1) has its
    popularity alone (0 if unknown or not trending). ``item_ids`` are by event."""
    chosen = np.array(positives, np.int64)
    own = cands.features[:, chosen].T.copy()
    outside = chosen < 0
    if outside.any():
        own[outside] = 0.0
        popular = FEATURES.index("popularity")
        for k in np.flatnonzero(outside).tolist():
            item_id = item_ids[taught[k]]
            if item_id is not None and item_id < cands.popularity.shape[0]:
                own[k, popular] = cands.popularity[item_id]
    return own


def training_pairs(
    cands: Candidates,
    weights: np.ndarray,
    events: Sequence[tuple[int, str, int]],
    index: ListIndex,
    *,
    n_negatives: int = 2,
    hard_pool: int = 50,
    outside_positives: bool = False,
) -> list[tuple[int, np.ndarray]]:
    """``(event position, positive - negative feature rows)`` for each event ``(row, item,
    seed)`` of ``events``.

    Half the negatives come from the row's current top ``hard_pool`` (ties at the cut
    included, in entry order: :func:`top_pool`), half uniformly from all its candidates (hard
    ones alone teach that a high neighbour score means "not chosen"). The picks are a pure
    function of ``seed`` (a hash of the event), so a replayed event teaches the same pairs. A
    row with no other candidate teaches nothing, and so does an event whose item is no
    candidate, unless ``outside_positives`` is on: then its row is its popularity alone (it has
    no list feature). The served model leaves it off: those zero list features against the
    candidates' taught that the lists mislead, and the learner's weights wandered
    (docs/experiments.md).

    >>> index = ListIndex()
    >>> c = candidates([["a"]], {"a": [("x", 0.9), ("y", 0.5)]}, {}, [("t", 1.0)], index)
    >>> w, events = np.array([FIXED_BLEND]), [(0, "y", 7), (0, "zz", 8)]
    >>> [(at, d.shape) for at, d in training_pairs(c, w, events, index)]
    [(0, (2, 6))]
    >>> [(at, d.shape) for at, d in training_pairs(c, w, events, index, outside_positives=True)]
    [(0, (2, 6)), (1, (2, 6))]
    """
    if not cands.size:
        return []
    by_row = _hard_pools(cands, weights, hard_pool)
    item_ids = [index.ids.get(item) for _, item, _ in events]
    positions = _positive_entries(cands, events, item_ids)
    taught, positives, picks = _negative_picks(
        cands, events, positions, by_row, n_negatives, outside_positives
    )
    if not taught:
        return []
    own = _positive_rows(cands, positives, item_ids, taught)
    negatives = cands.features[:, np.array(picks, np.int64)].transpose(1, 2, 0)
    return list(zip(taught, own[:, None, :] - negatives, strict=True))


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
