"""Array helpers of the batch scorer: item lists as int64 ids, grouping, per-user scaling, top-n.

Scoring a batch one user at a time cost ~25 small numpy calls per user, and numpy's per-call
overhead was most of the worker's scoring time; these work on a whole batch's (user, item)
entries at once, each pair packed as one int64 key ``row * vocabulary + item id``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class ListIndex:
    """Published item lists as numpy arrays over one growing item vocabulary.

    Scoring sums up to ``recent x M`` (item, weight) pairs per user; as Python dict updates that
    was a quarter of the worker's CPU, as one ``np.unique`` + ``np.bincount`` it is a few
    small array calls. A list is converted once per list *object*: ``RedisCache`` returns the
    same object while a list's bytes are unchanged, so most lists are converted once, not
    once per batch.

    Converted lists live side by side in one pool (ids and weights), each as a ``(start,
    length)`` span: a batch gathers thousands of lists (one per recent item of every event it
    learns), and :meth:`take` copies all of them with one index array instead of concatenating
    thousands of small arrays.

    >>> index = ListIndex()
    >>> lst = [("b", 0.5), ("c", 0.25)]
    >>> ids, weights = index.arrays("a", lst)
    >>> [index.items[i] for i in ids], weights.tolist()
    (['b', 'c'], [0.5, 0.25])
    >>> index.span("a", lst) == index.span("a", lst)   # converted once
    True
    >>> index.take([index.span("a", lst)[0]] * 2, [2, 1])[1].tolist()
    [0.5, 0.25, 0.5]
    """

    def __init__(
        self, max_lists: int = 200_000, capacity: int = 1 << 16, slack: int = 1 << 16
    ) -> None:
        self.ids: dict[str, int] = {}
        self.items: list[str] = []
        self.max_lists = max_lists
        self._lists: dict[str, tuple[object, int, int]] = {}  # owner -> (list, start, length)
        self._pool_ids = np.empty(capacity, np.int64)
        self._pool_weights = np.empty(capacity, np.float64)
        self._used = 0  # pool entries written (live or replaced)
        self._live = 0  # entries of the lists in ``_lists``
        #: replaced entries tolerated beyond the live ones before :meth:`begin` packs the pool
        self.slack = slack

    def id_of(self, item: str) -> int:
        found = self.ids.get(item)
        if found is None:
            found = self.ids[item] = len(self.items)
            self.items.append(item)
        return found

    def span(self, owner: str, lst: Sequence[tuple[str, float]]) -> tuple[int, int]:
        """``(start, length)`` of ``owner``'s list in the pool, converting it if it changed."""
        entry = self._lists.get(owner)
        if entry is not None and entry[0] is lst:
            return entry[1], entry[2]
        n = len(lst)
        if entry is not None:
            self._live -= entry[2]
        start = self._reserve(n)
        self._pool_ids[start : start + n] = np.fromiter(
            (self.id_of(item) for item, _ in lst), np.int64, n
        )
        self._pool_weights[start : start + n] = np.fromiter((w for _, w in lst), np.float64, n)
        self._lists[owner] = (lst, start, n)
        self._live += n
        return start, n

    def arrays(self, owner: str, lst: Sequence[tuple[str, float]]) -> tuple[np.ndarray, np.ndarray]:
        """``(item ids, weights)`` of ``owner``'s list (copies: :meth:`begin` moves the pool)."""
        start, n = self.span(owner, lst)
        at = slice(start, start + n)
        return self._pool_ids[at].copy(), self._pool_weights[at].copy()

    def take(self, starts: Sequence[int], lengths: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """The spans' ids and weights, one after the other (one fancy index per pool)."""
        at = spans(np.asarray(starts, np.int64), np.asarray(lengths, np.int64))
        return self._pool_ids[at], self._pool_weights[at]

    def begin(self) -> None:
        """Before a batch's spans are taken (never between a :meth:`span` and its
        :meth:`take`: it moves them): forget every list past ``max_lists``, or pack the
        live lists once replaced ones fill more than half the pool."""
        if len(self._lists) >= self.max_lists:
            self._lists.clear()
            self._used = self._live = 0
        elif self._used > 2 * self._live + self.slack:
            owners = list(self._lists)
            lengths = np.array([self._lists[o][2] for o in owners], np.int64)
            ids, weights = self.take([self._lists[o][1] for o in owners], lengths)
            starts = (np.cumsum(lengths) - lengths).tolist()
            self._pool_ids[: ids.shape[0]] = ids
            self._pool_weights[: ids.shape[0]] = weights
            for owner, start in zip(owners, starts, strict=True):
                lst, _, n = self._lists[owner]
                self._lists[owner] = (lst, start, n)
            self._used = self._live = int(ids.shape[0])

    def _reserve(self, n: int) -> int:
        start = self._used
        if start + n > self._pool_ids.shape[0]:
            size = max(2 * self._pool_ids.shape[0], start + n)
            ids, weights = np.empty(size, np.int64), np.empty(size, np.float64)
            ids[:start], weights[:start] = self._pool_ids[:start], self._pool_weights[:start]
            self._pool_ids, self._pool_weights = ids, weights
        self._used = start + n
        return start


def spans(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Every position of the spans ``starts[i] : starts[i] + lengths[i]``, in order.

    >>> spans(np.array([5, 0]), np.array([2, 3])).tolist()
    [5, 6, 0, 1, 2]
    """
    total = int(lengths.sum())
    if not total:
        return np.empty(0, np.int64)
    return np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(total)


#: :func:`groups` flags every possible key while the key space is at most this many times the
#: number of keys (a batch over a small catalogue); past that, one sort is cheaper
DENSE_KEYS_PER_ENTRY = 8


def groups(keys: np.ndarray, space: int) -> tuple[np.ndarray, np.ndarray]:
    """``(group of each key, distinct keys ascending)`` for int64 ``keys`` in ``[0, space)``.

    ``np.unique(return_inverse=True)`` gives the same, but its argsort over a whole batch cost
    about as much as the per-user calls it replaces: a flag per possible key, or one plain sort
    of the keys packed with their positions, is several times cheaper. Either way the group of
    each key is given in input order, so a ``bincount`` over it adds a group's weights in input
    order, exactly as a per-user ``bincount`` did.

    >>> groups(np.array([5, 2, 5, 9]), 10)
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


def segments(sorted_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(start, length)`` of each run of equal values in ``sorted_rows`` (non-empty).

    >>> segments(np.array([0, 0, 3, 3, 3, 4]))
    (array([0, 2, 5]), array([2, 3, 1]))
    """
    change = np.flatnonzero(sorted_rows[1:] != sorted_rows[:-1]) + 1
    starts = np.concatenate([[0], change])
    return starts, np.diff(np.concatenate([starts, [sorted_rows.shape[0]]]))


def scaled(
    values: np.ndarray, present: np.ndarray, starts: np.ndarray, lengths: np.ndarray, weight: float
) -> np.ndarray:
    """One source's contribution: each user's ``values`` times ``weight / their max`` (as they
    are where that max is not positive), 0 where the source has no entry.

    The per-user ``values * (weight / values.max())`` for a whole batch; the trailing ``+ 0.0``
    repeats the per-user ``bincount`` that placed the values (it turns ``-0.0`` into ``0.0``).

    >>> scaled(np.array([2.0, 4.0, 9.0]), np.array([True, True, False]),
    ...         np.array([0, 2]), np.array([2, 1]), 1.0).tolist()
    [0.5, 1.0, 0.0]
    """
    top = np.maximum.reduceat(np.where(present, values, -np.inf), starts)
    scale = np.divide(weight, top, out=np.ones_like(top), where=top > 0)
    return np.add(
        values * np.repeat(scale, lengths), 0.0, out=np.zeros(values.shape), where=present
    )


def string_ranks(ids: np.ndarray, items: Sequence[str]) -> np.ndarray:
    """Rank of each id's item string among ``ids``' strings: the scores' tie-break is the item
    id, and integer ids follow arrival, not the string order.

    >>> string_ranks(np.array([0, 1, 0]), ["b", "a"]).tolist()
    [1, 0, 1]
    """
    group, distinct = groups(ids, len(items))
    names = [items[i] for i in distinct.tolist()]
    ranks = np.empty(distinct.shape[0], np.int64)
    ranks[sorted(range(len(names)), key=names.__getitem__)] = np.arange(distinct.shape[0])
    return ranks[group]


def top_pool(totals: np.ndarray, n: int, bounds: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Positions of the entries scoring at least their row's ``n``-th best (ties included), in
    entry order: :func:`top_n`'s set without its order, for drawing hard negatives.

    >>> rows, totals = np.array([0, 0, 0, 1]), np.array([1.0, 3.0, 3.0, 2.0])
    >>> top_pool(totals, 1, segments(rows)).tolist()
    [1, 2, 3]
    """
    starts, lengths = bounds
    widest = int(lengths.max())
    if widest <= n:
        return np.arange(totals.shape[0])
    negative = -totals
    padded = np.full((starts.shape[0], widest), np.inf)
    segment = np.repeat(np.arange(starts.shape[0]), lengths)
    padded[segment, np.arange(totals.shape[0]) - starts[segment]] = negative
    cut = np.partition(padded, n - 1, axis=1)[:, n - 1]
    return np.flatnonzero(negative <= cut[segment])


def top_n(
    rows: np.ndarray,
    totals: np.ndarray,
    ids: np.ndarray,
    items: Sequence[str],
    n: int,
    bounds: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """Positions of each user's ``n`` best (``totals`` descending, then item string), by user
    (``rows``, ascending and contiguous), best first.

    A row-wise ``np.partition`` over the candidates padded to a matrix cuts each user's list to
    the ones tied with or above its ``n``-th best; only those are fully sorted.

    >>> rows, totals = np.array([0, 0, 0, 1]), np.array([1.0, 3.0, 3.0, 2.0])
    >>> top_n(rows, totals, np.array([0, 2, 1, 0]), "abc", 2, segments(rows)).tolist()
    [2, 1, 3]
    """
    starts, lengths = bounds
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
    ties = string_ranks(ids[picked], items)
    ranked = picked[np.lexsort((ties, negative[picked], rows[picked]))]
    firsts, counts = segments(rows[ranked])
    place = np.arange(ranked.shape[0]) - np.repeat(firsts, counts)
    return ranked[place < n]
