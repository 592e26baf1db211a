"""Content in the stream model: the catalog's categories as tokens, a user's profile from her
recent items, and the cold pool, the catalog items the stream has not surfaced yet, from which
each user gets those closest to her profile (how an item with no events reaches anyone).

An item's vector is its categories, one-hot and of unit length; a profile sums the vectors of
the user's ``recent`` items, ``recency_decay`` per step back, as the knn feature does; the
``content`` feature is their cosine. An item is cold until the stream shows it to the model:
until it appears in a trending list the scorer reads (docs/stream.md, "Content and cold items").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import chain
from typing import NamedTuple

import numpy as np
from scipy import sparse

from models.catalog import ItemRecord
from models.online.stream.arrays import ListIndex, spans


class Profiles(NamedTuple):
    """A batch's user profiles, sparse: ``keys`` (``row * width + token``, ascending) with
    their ``values``, each row's Euclidean ``norms``, and the token space ``width``."""

    keys: np.ndarray
    values: np.ndarray
    norms: np.ndarray
    width: int

    def matrix(self, users: int) -> sparse.csr_matrix:
        rows, cols = np.divmod(self.keys, self.width)
        scale = 1.0 / np.maximum(self.norms[rows], 1e-12)
        return sparse.csr_matrix(
            (self.values * scale, (rows, cols)), shape=(users, self.width), dtype=np.float64
        )

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """The profile value at each key (0 where the profile has none)."""
        at = np.searchsorted(self.keys, keys)
        at = np.minimum(at, max(self.keys.shape[0] - 1, 0))
        if not self.keys.shape[0]:
            return np.zeros(keys.shape[0])
        return np.where(self.keys[at] == keys, self.values[at], 0.0)


class ColdPool(NamedTuple):
    """The cold items' index ids, whether each is still cold (``alive``), each item's row,
    and their categories as *signatures*: the distinct category sets (unit vectors, rows of
    ``matrix``) and each item's signature. A catalog has far fewer category sets than items
    (MovieLens: about 200 for 1,682 films), and every item of a set scores the same cosine."""

    ids: np.ndarray
    matrix: sparse.csr_matrix
    alive: np.ndarray
    rows: dict[str, int]
    signature: np.ndarray


class ItemContent:
    """Each catalog item's category tokens, the cold pool, and both as arrays over the
    :class:`ListIndex` ids a batch's candidates carry.

    >>> content = ItemContent()
    >>> content.publish("a", ["Drama"]); content.publish("b", ["Drama", "War"])
    >>> content.publish("c", ["Comedy"], hidden=True)
    >>> list(content.cold), content.names_of("b")
    (['a', 'b'], ['Drama', 'War'])
    >>> content.warmed(["a"]); list(content.cold)
    ['b']
    """

    def __init__(self, max_tokens: int = 4096, pool_size: int = 2000) -> None:
        self.max_tokens = max_tokens
        self.pool_size = pool_size
        self.vocab: dict[str, int] = {}
        self.token_names: list[str] = []
        #: item -> its token ids (ascending, distinct); items without a category have none
        self.tokens: dict[str, np.ndarray] = {}
        #: cold catalog items, the newest published last
        self.cold: dict[str, None] = {}
        #: catalog items the stream has shown (a newer record of one does not make it cold)
        self.warm: set[str] = set()
        self._pool: ColdPool | None = None
        # token spans of the index ids: item id -> (start, length) in ``_pool_tokens``
        self._starts = np.zeros(0, np.int64)
        self._lengths = np.zeros(0, np.int64)
        self._pool_tokens = np.zeros(0, np.int64)
        self._dirty: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.tokens)

    def _token(self, name: str) -> int | None:
        found = self.vocab.get(name)
        if found is None and len(self.vocab) < self.max_tokens:
            found = self.vocab[name] = len(self.token_names)
            self.token_names.append(name)
        return found

    def publish(self, item_id: str, categories: Iterable[str], hidden: bool = False) -> None:
        """An item's newest record: its categories, and whether the catalog hides it (a
        hidden item still describes the users who had it, but is never a cold candidate)."""
        ids = {self._token(name) for name in categories}
        ids.discard(None)
        warm = item_id in self.warm
        self.delete(item_id)
        if ids:
            self.tokens[item_id] = np.array(sorted(ids), np.int64)
            if warm:
                self.warm.add(item_id)
            elif not hidden:
                self.cold[item_id] = None
                self._pool = None

    def apply(self, item_id: str, record: ItemRecord | None) -> None:
        """One message of the catalog topic: a record, or None (a tombstone)."""
        if record is None:
            self.delete(item_id)
        else:
            self.publish(item_id, record.categories, record.hidden)

    def delete(self, item_id: str) -> None:
        """The item left the catalog (a tombstone)."""
        self.tokens.pop(item_id, None)
        self.warm.discard(item_id)
        if self.cold.pop(item_id, 0) is None:
            self._left_pool(item_id)
        self._dirty.add(item_id)

    def _left_pool(self, item: str) -> None:
        """An item is no longer cold: masked in the pool's arrays, rebuilt when half is dead."""
        if self._pool is not None:
            row = self._pool.rows.get(item)
            if row is not None:
                self._pool.alive[row] = False

    def warmed(self, items: Iterable[str]) -> None:
        """These items are in the stream's lists now: no longer cold."""
        cold, tokens, warm = self.cold, self.tokens, self.warm
        for item in items:
            if item in cold:
                del cold[item]
                self._left_pool(item)
            if item in tokens:
                warm.add(item)

    def names_of(self, item_id: str) -> list[str]:
        return [self.token_names[t] for t in self.tokens.get(item_id, ())]

    def token_spans(self, index: ListIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(starts, lengths, tokens)``: index id ``i``'s tokens are
        ``tokens[starts[i]:starts[i] + lengths[i]]``. Converted once per index id, and again
        only after its record changed."""
        known, size = self._starts.shape[0], len(index.items)
        fresh = list(range(known, size))
        fresh += [index.ids[item] for item in self._dirty if index.ids.get(item, size) < known]
        self._dirty.clear()
        if size > known:
            self._starts = np.concatenate([self._starts, np.zeros(size - known, np.int64)])
            self._lengths = np.concatenate([self._lengths, np.zeros(size - known, np.int64)])
        if fresh:
            empty = np.zeros(0, np.int64)
            found = [self.tokens.get(index.items[i], empty) for i in fresh]
            lengths = np.fromiter(map(len, found), np.int64, len(found))
            at = np.array(fresh, np.int64)
            self._lengths[at] = lengths
            self._starts[at] = self._pool_tokens.shape[0] + np.cumsum(lengths) - lengths
            self._pool_tokens = np.concatenate([self._pool_tokens, *found])
        return self._starts, self._lengths, self._pool_tokens

    def pool(self, index: ListIndex) -> ColdPool:
        """The cold pool (the newest ``pool_size`` cold items) as arrays. Items that warm up
        are masked (``alive``) rather than rebuilt away: the trending list changes every
        batch, and ``StreamModel`` asks once per event."""
        pool = self._pool
        if pool is None or 2 * np.count_nonzero(pool.alive) < pool.alive.shape[0]:
            items = list(self.cold)[-self.pool_size :]
            ids = np.fromiter(map(index.id_of, items), np.int64, len(items))
            code: dict[bytes, int] = {}
            signature = np.fromiter(
                (code.setdefault(self.tokens[item].tobytes(), len(code)) for item in items),
                np.int64,
                len(items),
            )
            found = [np.frombuffer(key, np.int64) for key in code]
            lengths = np.fromiter(map(len, found), np.int64, len(found))
            cols = np.concatenate(found) if found else np.zeros(0, np.int64)
            values = np.repeat(1.0 / np.sqrt(np.maximum(lengths, 1)), lengths)
            ptr = np.concatenate([[0], np.cumsum(lengths)])
            matrix = sparse.csr_matrix((values, cols, ptr), shape=(len(found), self.max_tokens))
            rows = {item: k for k, item in enumerate(items)}
            alive = np.ones(len(items), bool)
            pool = self._pool = ColdPool(ids, matrix, alive, rows, signature)
        return pool


def profiles(recent: Sequence[Sequence[str]], decay: float, content: ItemContent) -> Profiles:
    """Each row's profile from its ``recent`` items, newest first (``decay ** age`` each).

    >>> c = ItemContent(); c.publish("a", ["x"]); c.publish("b", ["x", "y"])
    >>> p = profiles([["b", "a"]], 0.5, c)
    >>> p.keys.tolist(), p.values.round(3).tolist()
    ([0, 1], [1.207, 0.707])
    """
    width = content.max_tokens
    flat = list(chain.from_iterable(recent))
    names = list(dict.fromkeys(flat))
    code = {name: k for k, name in enumerate(names)}
    empty = np.zeros(0, np.int64)
    found = [content.tokens.get(name, empty) for name in names]
    name_lengths = np.fromiter(map(len, found), np.int64, len(found))
    name_starts = np.cumsum(name_lengths) - name_lengths
    tokens = np.concatenate([empty, *found])
    counts = np.fromiter(map(len, recent), np.int64, len(recent))
    source = np.fromiter(map(code.__getitem__, flat), np.int64, len(flat))
    rows = np.repeat(np.arange(len(recent), dtype=np.int64), counts)
    ages = np.arange(len(flat), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    weight = decay ** ages.astype(np.float64) / np.sqrt(np.maximum(name_lengths[source], 1))
    lengths = name_lengths[source]
    at = spans(name_starts[source], lengths)
    keys = np.repeat(rows, lengths) * width + tokens[at]
    distinct, inverse = np.unique(keys, return_inverse=True)
    values = np.bincount(inverse, weights=np.repeat(weight, lengths), minlength=distinct.shape[0])
    norms = np.sqrt(np.bincount(distinct // width, weights=values**2, minlength=len(recent)))
    return Profiles(distinct, values, norms, width)


def cold_entries(
    profile: Profiles, users: int, content: ItemContent, index: ListIndex, per_row: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, rows)``: each row's ``per_row`` cold items of highest cosine (above 0), the
    newest published first on a tie.

    Scored per signature, not per item: a row's ``per_row``-th best item scores at least its
    ``per_row``-th best signature, so only the signatures scoring that much, and the newest
    ``per_row`` alive items of each, can be among its best; those few are then ranked as
    items. The same result as one cosine per (row, pool item), which was most of content's
    live cost on MovieLens (a pool of ~1,500 items against every learning row).
    """
    pool = content.pool(index)
    if not pool.ids.shape[0] or not profile.keys.shape[0] or per_row <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    members, starts, counts = _alive_by_signature(pool)
    scores = (profile.matrix(users) @ pool.matrix.T).tocoo()
    rows, sigs, values = scores.row.astype(np.int64), scores.col.astype(np.int64), scores.data
    keep = (counts[sigs] > 0) & (values > 0)
    rows, sigs, values = rows[keep], sigs[keep], values[keep]
    rows, sigs, values = _ranked(rows, values, users, per_row, sigs, tie_break=False)
    take = np.minimum(counts[sigs], per_row)
    cols = members[spans(starts[sigs], take)]
    rows, values = np.repeat(rows, take), np.repeat(values, take)
    rows, cols, _ = _ranked(rows, values, users, per_row, cols, tie_break=True)
    return pool.ids[cols], rows


def _alive_by_signature(pool: ColdPool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(members, starts, counts)``: the alive pool rows grouped by signature, the newest
    (highest row) first in each; signature ``s`` holds ``members[starts[s]:][:counts[s]]``."""
    alive = np.flatnonzero(pool.alive)
    sig = pool.signature[alive]
    members = alive[np.lexsort((-alive, sig))]
    counts = np.bincount(sig, minlength=pool.matrix.shape[0])
    return members, np.cumsum(counts) - counts, counts


def _ranked(
    rows: np.ndarray,
    values: np.ndarray,
    users: int,
    per_row: int,
    cols: np.ndarray,
    *,
    tie_break: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The entries by row, best value first. ``tie_break``: ties go to the highest ``cols``
    (the newest item) and each row keeps its best ``per_row``; otherwise each row keeps every
    entry scoring at least its ``per_row``-th best (ties at the cut included)."""
    keys = (-values, rows) if not tie_break else (-cols, -values, rows)
    order = np.lexsort(keys)
    rows, cols, values = rows[order], cols[order], values[order]
    first = np.searchsorted(rows, np.arange(users))
    rank = np.arange(rows.shape[0]) - first[rows]
    if tie_break:
        keep = rank < per_row
    else:
        last = np.searchsorted(rows, np.arange(users), side="right") - 1
        cut = np.minimum(first + per_row - 1, last)
        floor = np.where(last >= first, values[np.maximum(cut, 0)] if values.size else 0.0, 0.0)
        keep = values >= floor[rows]
    return rows[keep], cols[keep], values[keep]


def content_values(
    profile: Profiles, content: ItemContent, index: ListIndex, rows: np.ndarray, ids: np.ndarray
) -> np.ndarray:
    """The ``content`` feature of each (row, item id) entry: the cosine of the row's profile
    and the item's vector (0 for an item without categories or a row without a profile)."""
    starts, lengths, tokens = content.token_spans(index)
    n = lengths[ids]
    entry = np.repeat(np.arange(ids.shape[0], dtype=np.int64), n)
    keys = rows[entry] * profile.width + tokens[spans(starts[ids], n)]
    dots = np.bincount(entry, weights=profile.lookup(keys), minlength=ids.shape[0])
    scale = np.sqrt(np.maximum(n, 1)) * np.maximum(profile.norms[rows], 1e-12)
    return dots / scale


def content_reason(profile: Profiles, content: ItemContent, row: int, item: str) -> str | None:
    """ "because you like Drama": the item's category that weighs most in the row's profile."""
    tokens = content.tokens.get(item)
    if tokens is None or not tokens.shape[0]:
        return None
    weights = profile.lookup(row * profile.width + tokens)
    if weights.max() <= 0:
        return None
    return f"{LIKE_REASON}{content.token_names[int(tokens[np.argmax(weights)])]}"


#: "because you like Drama": the content feature ranked the item, Drama its strongest category
LIKE_REASON = "because you like "
