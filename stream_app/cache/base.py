"""What the stream worker stores and reads, independent of where: value types and the interface.

Backends (``RedisCache`` for production, ``MemoryCache`` for tests and dry runs) implement
``RecCache``; one contract test suite runs against both. Errors are sorted at this boundary:
a backend retries connection blips itself and, when it gives up, raises ``CacheUnavailable``
(the caller degrades: logs, counts, carries on); anything else is a bug and propagates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import orjson

from models.catalog import InvalidItem, ItemRecord, decode_item
from models.online.stream.scoring import Recommendation

__all__ = ["CacheUnavailable", "RecCache", "Recommendation", "UserRecs"]


class CacheUnavailable(RuntimeError):
    """The cache could not be reached after retries; the caller should degrade, not crash."""


@dataclass(frozen=True, slots=True)
class UserRecs:
    """The cached top-N of one user, as stored under ``{prefix}:recs:{user_id}``.

    Examples
    --------
    >>> recs = UserRecs("u1", (Recommendation("i9", 2.5, "trending now"),),
    ...                 {"trending": "trending-v1"}, 1700000000000)
    >>> UserRecs.from_json(recs.to_json()) == recs
    True
    >>> recs.to_json()[:60]
    b'{"user_id":"u1","items":[{"item_id":"i9","score":2.5,"reason'
    """

    user_id: str
    items: tuple[Recommendation, ...]
    model_versions: Mapping[str, str] = field(default_factory=dict)
    computed_at: int = 0  #: epoch ms (wall clock) when the worker wrote it
    #: the user's last few history items, oldest first (what the lists follow from)
    recent: tuple[str, ...] = ()

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "user_id": self.user_id,
                "items": [r.to_json_dict() for r in self.items],
                "model_versions": dict(self.model_versions),
                "computed_at": self.computed_at,
                "recent": list(self.recent),
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> UserRecs:
        data = orjson.loads(raw)
        return cls(
            user_id=str(data["user_id"]),
            items=tuple(
                Recommendation(str(r["item_id"]), float(r["score"]), str(r["reason"]))
                for r in data["items"]
            ),
            model_versions={str(k): str(v) for k, v in data.get("model_versions", {}).items()},
            computed_at=int(data.get("computed_at", 0)),
            recent=tuple(str(item) for item in data.get("recent", ())),
        )

    @staticmethod
    def item_ids_from_json(raw: bytes | str) -> list[str]:
        """Only the item ids, in order, of :meth:`from_json` (the online HitRate judges every
        batch's users against them; building the whole ``UserRecs`` is not needed there).

        >>> UserRecs.item_ids_from_json(UserRecs("u1", (Recommendation("i9", 2.5, "r"),)).to_json())
        ['i9']
        """
        return [str(r["item_id"]) for r in orjson.loads(raw)["items"]]


def encode_neighbors(neighbors: Sequence[tuple[str, float]]) -> bytes:
    """An item's neighbour list as stored under ``{prefix}:neighbors:{item_id}``.

    >>> encode_neighbors([("b", 0.5)])
    b'[["b",0.5]]'
    >>> decode_neighbors(encode_neighbors([("b", 0.5)]))
    [('b', 0.5)]
    """
    # numpy's rounding of the whole list: Python's ``round`` per score was most of the item
    # side's publishing time (bench/encode_lists.py); both give the same 6-decimal floats.
    scores = np.round(np.array([s for _, s in neighbors], np.float64), 6).tolist()
    return orjson.dumps([[item, s] for (item, _), s in zip(neighbors, scores, strict=True)])


def decode_neighbors(raw: bytes | str) -> list[tuple[str, float]]:
    """Inverse of :func:`encode_neighbors`; a damaged value reads as no neighbours."""
    try:
        return [(str(item), float(s)) for item, s in orjson.loads(raw)]
    except (ValueError, TypeError):
        return []


def fresh_positions(
    positions: Sequence[tuple[int, int]], marks: Mapping[int, int]
) -> tuple[list[int], dict[int, int]]:
    """Indices of the positions past ``marks``, and the marks after them.

    >>> fresh_positions([(0, 5), (0, 6), (1, 2), (1, -1)], {0: 5})
    ([1, 2, 3], {0: 6, 1: 2})
    """
    keep = [i for i, (p, o) in enumerate(positions) if o < 0 or o > marks.get(p, -1)]
    moved = dict(marks)
    for i in keep:
        p, o = positions[i]
        if o > moved.get(p, -1):
            moved[p] = o
    return keep, moved


def refresh_wanted(cached: bytes | None, read_at_ms: int, session: str | None) -> bool:
    """Whether a recomputed list whose model versions name ``session`` should replace the
    ``cached`` value (``RecCache.write_refreshed``'s rule; the Redis backend's script is its
    twin). A damaged value is replaced.

    >>> old = UserRecs("u", (), {"session": "v1"}, computed_at=100).to_json()
    >>> [refresh_wanted(old, at, new) for at, new in ((150, "v2"), (50, "v2"), (150, "v1"))]
    [True, False, False]
    >>> refresh_wanted(None, 150, "v2"), refresh_wanted(b"{oops", 150, "v2")
    (False, True)
    """
    if cached is None:
        return False
    try:
        stored = orjson.loads(cached)
        computed_at = float(stored.get("computed_at") or 0)
        versions = stored.get("model_versions") or {}
        stored_session = versions.get("session") if isinstance(versions, dict) else None
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return True
    return computed_at <= read_at_ms and (stored_session or None) != (session or None)


def decode_item_meta(
    item_ids: Sequence[str], raws: Sequence[bytes | None]
) -> dict[str, ItemRecord]:
    """The stored catalog records of those ``item_ids`` whose value (``raws``, MGET's order) is
    a record; a damaged one reads as no metadata, never an error.

    >>> decode_item_meta(["a", "b", "c"], [b'{"item_id": "a", "title": "A"}', None, b"{oops"])
    {'a': ItemRecord(item_id='a', title='A', categories=(), attributes={}, hidden=False)}
    """
    out: dict[str, ItemRecord] = {}
    for item_id, raw in zip(item_ids, raws, strict=True):
        if raw is None:
            continue
        try:
            out[item_id] = decode_item(raw)
        except InvalidItem:
            continue
    return out


def names_user(entry: bytes, user_ids: Sequence[str]) -> bool:
    """Whether a dead-letter journal entry's payload preview names one of ``user_ids`` (as a
    JSON string): forgetting a user drops such entries. Broad on purpose: an item with her id
    matches too, and losing a dashboard line costs less than keeping her id.

    >>> entry = orjson.dumps({"preview": '{"user_id": "u7", "item_id": 3'})
    >>> names_user(entry, ["u7"]), names_user(entry, ["u"]), names_user(b"{oops", ["u7"])
    (True, False, False)
    """
    try:
        preview = orjson.loads(entry).get("preview", "")
    except (orjson.JSONDecodeError, AttributeError):
        return False
    if not isinstance(preview, str):
        return False
    return any(orjson.dumps(user).decode() in preview for user in user_ids)


@runtime_checkable
class RecCache(Protocol):
    """Where the worker keeps trending popularity, per-user top-N and its counters."""

    def update_trending(
        self,
        weights: Sequence[tuple[str, float, int]],
        half_life_s: float,
        now_ms: int,
        top_k: int,
        hwm: tuple[str, Sequence[tuple[int, int]]] | None = None,
        counters: Mapping[str, int] | None = None,
        *,
        absent_only: bool = False,
    ) -> list[tuple[str, float]]:
        """Add ``(item_id, weight, timestamp_ms)`` observations with forward decay, then return
        the ``top_k`` items by popularity decayed to ``now_ms``, best first (ties: item id).
        With ``absent_only`` an item already ranked keeps its score and the others are set to
        their weight (a rebuild's seeds never add to what live batches counted since).

        ``hwm=(topic, positions)`` gives each observation's ``(partition, offset)``: in one
        atomic step, observations at or below the topic's stored high-water marks are dropped
        (counted before: a restart or a rebalance replayed them), the others added, the marks
        moved and ``counters`` added to the stats, with ``events`` replaced by the number of
        observations kept (offset -1: unknown, always kept). :meth:`read_hwm` reads the marks."""
        ...

    def read_hwm(self, topic: str) -> dict[int, int]:
        """partition -> last offset of ``topic`` already counted (empty when none)."""
        ...

    def raise_marks(self, name: str, marks: Mapping[int, int]) -> None:
        """Move the high-water marks named ``name`` up to ``marks`` where they are lower (or
        absent), in one atomic step: a worker re-writes what it processed after Redis lost it,
        and a mark never goes back (that would count events twice)."""
        ...

    def generation(self, candidate: str | None) -> dict[str, str]:
        """The fields of the generation marker (``CacheKeys.generation``), after creating it
        with ``candidate`` as its ``token`` if there is none (one atomic step, so concurrent
        workers agree on one token); ``None`` reads it and creates nothing."""
        ...

    def mark_rebuilt(self, token: str, names: Sequence[str]) -> bool:
        """Set each of ``names`` to ``token`` in the generation marker if its token is still
        ``token`` (atomically); False when the marker changed meanwhile (Redis lost its data
        again: the rebuild must start over)."""
        ...

    def drop_generation(self) -> None:
        """Delete the generation marker: every worker then rebuilds what it owns
        (``streamrec rebuild-cache``)."""
        ...

    def count_once(self, stat: str, marks: str, positions: Sequence[tuple[int, int]]) -> int:
        """Add to the ``stat`` counter the ``(partition, offset)`` positions past the high-water
        marks named ``marks`` (:meth:`read_hwm` reads them) and move those marks, in one atomic
        step; returns how many were added. A replayed position is counted once: the dead
        letters' counter, whose sends are not in the recs' transaction, relies on it."""
        ...

    def get_neighbors(self, item_ids: Sequence[str]) -> dict[str, list[tuple[str, float]]]:
        """Published neighbour lists of those items that have one (one round trip)."""
        ...

    def get_successors(self, item_ids: Sequence[str]) -> dict[str, list[tuple[str, float]]]:
        """Published successor lists (next-item probabilities) of those items that have one."""
        ...

    def get_norms(self, item_ids: Sequence[str]) -> dict[str, float]:
        """Published squared norms of those items that have one (one round trip)."""
        ...

    def publish_neighbors(
        self,
        lists: Mapping[str, Sequence[tuple[str, float]]],
        norms: Mapping[str, float],
        successors: Mapping[str, Sequence[tuple[str, float]]] | None = None,
    ) -> None:
        """Replace the neighbour (and successor) lists of these items and set their norms, in
        one round trip. Successor lists use the neighbour lists' encoding."""
        ...

    def top_trending(self, k: int, half_life_s: float, now_ms: int) -> list[tuple[str, float]]:
        """The current top ``k`` without adding anything."""
        ...

    def write_batch(
        self,
        recs: Sequence[UserRecs],
        ttl_s: int,
        stats: Mapping[str, int],
        hwm: tuple[str, Sequence[tuple[int, int]]] | None = None,
        state: Mapping[str, bytes] | None = None,
    ) -> None:
        """Store every user's top-N with a TTL and add ``stats`` to the counters, in one go.

        With ``hwm=(name, positions)`` this is one atomic step guarded by its own high-water
        marks (as in :meth:`update_trending`): the ``events`` counter becomes the number of
        positions not counted before. ``state`` (key -> bytes, no TTL) is written in the same
        step: learned state that must move exactly with the counted marks."""
        ...

    def read_state(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The values of those ``state`` keys that exist (one round trip)."""
        ...

    def write_refreshed(self, recs: Sequence[UserRecs], ttl_s: int, read_at_ms: int) -> int:
        """Store recomputed top-Ns with a TTL where they are still wanted, add how many were
        stored to the ``refreshed`` counter, in one atomic step; returns that number.

        A list is stored only over a cached list of its user (a refresh never brings back one
        that expired or was forgotten) that was computed at or before ``read_at_ms`` (when the
        refresh read her history: a later list came from a history at least as new) and that
        does not already name the new list's session model (:func:`refresh_wanted`)."""
        ...

    def append_journal(self, key: str, entries: Sequence[bytes], keep: int) -> None:
        """Push ``entries`` (oldest first) onto the capped list ``key``, which keeps the newest
        ``keep``, newest first (``stream_app.cache.journals``)."""
        ...

    def read_journal(self, key: str, n: int) -> list[bytes]:
        """The newest ``n`` entries of the list ``key``, newest first."""
        ...

    def write_catalog(self, records: Mapping[str, ItemRecord | None]) -> None:
        """Mirror catalog changes, item id -> its newest record or None (a tombstone), in one
        atomic step: each record replaces the item's metadata and sets its membership of the
        hidden set; a tombstone removes both and adds the id to the deleted set (a record
        takes it out again)."""
        ...

    def get_item_meta(self, item_ids: Sequence[str]) -> dict[str, ItemRecord]:
        """The catalog records of those items that have one (one round trip)."""
        ...

    def hidden_items(self) -> set[str]:
        """The ids of the items the catalog marks hidden."""
        ...

    def deleted_items(self) -> set[str]:
        """The ids of the items the catalog deleted (tombstones) and did not publish since."""
        ...

    def forget_users(
        self, user_ids: Sequence[str], marks: str, positions: Sequence[tuple[int, int]]
    ) -> int:
        """Delete every key that names those users (their cached lists) and the dead-letter
        journal's entries that name them (:func:`names_user`), and count the commands'
        ``(partition, offset)`` positions past the marks named ``marks`` under the
        ``forgotten`` stat, moving the marks, in one atomic step; returns how many were
        counted. Forgetting a user twice, or one never seen, is harmless."""
        ...

    def get_recs(self, user_id: str) -> UserRecs | None: ...

    def get_many_items(self, user_ids: Sequence[str]) -> dict[str, list[str]]:
        """The item ids, in order, of the cached lists of those users that have one (one round
        trip); damaged entries are left out, never raised. Ids only: the online HitRate judges
        every batch's users against them, and their full ``UserRecs`` are not needed there."""
        ...

    def get_stats(self) -> dict[str, int]: ...

    def close(self) -> None: ...
