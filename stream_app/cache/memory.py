"""In-process ``RecCache``: the reference behaviour the Redis backend is tested against.

Not shared between processes, so it is for tests, doctests and dry runs, never for a real worker
(``memory://`` in the cache URL).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from models.catalog import ItemRecord
from stream_app.cache.base import UserRecs, fresh_positions, names_user, refresh_wanted
from stream_app.cache.keys import STAT_NAMES
from stream_app.cache.trending import decayed_ranking, forward_increments, plan_epoch


class MemoryCache:
    """Dicts behind the ``RecCache`` interface; TTLs are checked on read.

    Examples
    --------
    >>> cache = MemoryCache()
    >>> cache.update_trending([("i1", 1.0, 1_700_000_000_000)], 3600.0, 1_700_000_000_000, 5)
    [('i1', 1.0)]
    >>> cache.write_batch([UserRecs("u1", ())], ttl_s=60, stats={"events": 1})
    >>> cache.get_recs("u1").user_id, cache.get_stats()["events"]
    ('u1', 1)
    """

    def __init__(self, max_trending: int = 50_000) -> None:
        self.max_trending = max_trending
        self._trending: dict[str, float] = {}
        self._epoch_ms: float | None = None
        self._recs: dict[str, tuple[UserRecs, float]] = {}
        self._stats: dict[str, int] = dict.fromkeys(STAT_NAMES, 0)
        self._hwm: dict[str, dict[int, int]] = {}
        self._neighbors: dict[str, list[tuple[str, float]]] = {}
        self._norms: dict[str, float] = {}
        self._successors: dict[str, list[tuple[str, float]]] = {}
        self._state: dict[str, bytes] = {}
        self._journals: dict[str, list[bytes]] = {}
        self._catalog: dict[str, ItemRecord] = {}
        self._deleted: set[str] = set()
        self._generation: dict[str, str] = {}

    def write_catalog(self, records: Mapping[str, ItemRecord | None]) -> None:
        for item_id, record in records.items():
            if record is None:
                self._catalog.pop(item_id, None)
                self._deleted.add(item_id)
            else:
                self._catalog[item_id] = record
                self._deleted.discard(item_id)

    def get_item_meta(self, item_ids: Sequence[str]) -> dict[str, ItemRecord]:
        return {i: self._catalog[i] for i in item_ids if i in self._catalog}

    def hidden_items(self) -> set[str]:
        return {i for i, record in self._catalog.items() if record.hidden}

    def deleted_items(self) -> set[str]:
        return set(self._deleted)

    def append_journal(self, key: str, entries: Sequence[bytes], keep: int) -> None:
        journal = self._journals.setdefault(key, [])
        journal[:0] = list(reversed(entries))
        del journal[keep:]

    def read_journal(self, key: str, n: int) -> list[bytes]:
        return list(self._journals.get(key, [])[:n])

    def read_state(self, keys: Sequence[str]) -> dict[str, bytes]:
        return {k: self._state[k] for k in keys if k in self._state}

    def read_hwm(self, topic: str) -> dict[int, int]:
        return dict(self._hwm.get(topic, {}))

    def raise_marks(self, name: str, marks: Mapping[int, int]) -> None:
        stored = self._hwm.setdefault(name, {})
        for partition, offset in marks.items():
            stored[partition] = max(offset, stored.get(partition, -1))

    def generation(self, candidate: str | None) -> dict[str, str]:
        if candidate is not None:
            self._generation.setdefault("token", candidate)
        return dict(self._generation)

    def mark_rebuilt(self, token: str, names: Sequence[str]) -> bool:
        if self._generation.get("token") != token:
            return False
        self._generation.update(dict.fromkeys(names, token))
        return True

    def drop_generation(self) -> None:
        self._generation.clear()

    def count_once(self, stat: str, marks: str, positions: Sequence[tuple[int, int]]) -> int:
        keep, self._hwm[marks] = fresh_positions(positions, self._hwm.get(marks, {}))
        if keep:
            self._stats[stat] = self._stats.get(stat, 0) + len(keep)
        return len(keep)

    def get_neighbors(self, item_ids: Sequence[str]) -> dict[str, list[tuple[str, float]]]:
        return {i: list(self._neighbors[i]) for i in item_ids if i in self._neighbors}

    def get_successors(self, item_ids: Sequence[str]) -> dict[str, list[tuple[str, float]]]:
        return {i: list(self._successors[i]) for i in item_ids if i in self._successors}

    def get_norms(self, item_ids: Sequence[str]) -> dict[str, float]:
        return {i: self._norms[i] for i in item_ids if i in self._norms}

    def publish_neighbors(
        self,
        lists: Mapping[str, Sequence[tuple[str, float]]],
        norms: Mapping[str, float],
        successors: Mapping[str, Sequence[tuple[str, float]]] | None = None,
    ) -> None:
        self._norms.update(norms)
        for item_id, neighbors in lists.items():
            self._neighbors[item_id] = list(neighbors)
        for item_id, nexts in (successors or {}).items():
            self._successors[item_id] = list(nexts)

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
        if weights and hwm:
            keep, self._hwm[hwm[0]] = fresh_positions(hwm[1], self._hwm.get(hwm[0], {}))
            weights = [weights[i] for i in keep]
            if counters is not None:
                counters = {**counters, "events": len(weights)}
        for name, count in (counters or {}).items():
            self._stats[name] = self._stats.get(name, 0) + int(count)
        if weights:
            epoch, factor = plan_epoch(self._epoch_ms, [ts for _, _, ts in weights], half_life_s)
            if factor is not None:
                self._trending = {item: s * factor for item, s in self._trending.items()}
            self._epoch_ms = epoch
            for item, inc in forward_increments(weights, epoch, half_life_s).items():
                if absent_only:
                    self._trending.setdefault(item, inc)
                else:
                    self._trending[item] = self._trending.get(item, 0.0) + inc
            if len(self._trending) > self.max_trending:
                keep = sorted(self._trending.items(), key=lambda p: (-p[1], p[0]))
                self._trending = dict(keep[: self.max_trending])
        return self.top_trending(top_k, half_life_s, now_ms)

    def top_trending(self, k: int, half_life_s: float, now_ms: int) -> list[tuple[str, float]]:
        if self._epoch_ms is None:
            return []
        ranked = decayed_ranking(self._trending.items(), self._epoch_ms, half_life_s, now_ms)
        return ranked[:k]

    def write_batch(
        self,
        recs: Sequence[UserRecs],
        ttl_s: int,
        stats: Mapping[str, int],
        hwm: tuple[str, Sequence[tuple[int, int]]] | None = None,
        state: Mapping[str, bytes] | None = None,
    ) -> None:
        self._state.update(state or {})
        if hwm is not None:
            keep, self._hwm[hwm[0]] = fresh_positions(hwm[1], self._hwm.get(hwm[0], {}))
            stats = {**stats, "events": len(keep)}
        expires = time.monotonic() + ttl_s
        for user_recs in recs:
            self._recs[user_recs.user_id] = (user_recs, expires)
        for name, count in stats.items():
            self._stats[name] = self._stats.get(name, 0) + int(count)

    def write_refreshed(self, recs: Sequence[UserRecs], ttl_s: int, read_at_ms: int) -> int:
        written = 0
        for user_recs in recs:
            cached = self.get_recs(user_recs.user_id)
            raw = cached.to_json() if cached is not None else None
            if refresh_wanted(raw, read_at_ms, user_recs.model_versions.get("session")):
                self._recs[user_recs.user_id] = (user_recs, time.monotonic() + ttl_s)
                written += 1
        self._stats["refreshed"] = self._stats.get("refreshed", 0) + written
        return written

    def forget_users(
        self, user_ids: Sequence[str], marks: str, positions: Sequence[tuple[int, int]]
    ) -> int:
        for user in user_ids:
            self._recs.pop(user, None)
        for journal in self._journals.values():  # only dead letters have a preview
            journal[:] = [e for e in journal if not names_user(e, user_ids)]
        return self.count_once("forgotten", marks, positions)

    def get_recs(self, user_id: str) -> UserRecs | None:
        entry = self._recs.get(user_id)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def get_many_items(self, user_ids: Sequence[str]) -> dict[str, list[str]]:
        found = {user: self.get_recs(user) for user in user_ids}
        return {user: [r.item_id for r in recs.items] for user, recs in found.items() if recs}

    def get_stats(self) -> dict[str, int]:
        return dict(self._stats)

    def close(self) -> None:
        return None
