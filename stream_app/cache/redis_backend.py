"""``RecCache`` on Redis with redis-py's blocking client and pipelines.

Blocking on purpose: the worker calls it from a thread (``asyncio.to_thread``), one batch at a
time, so a slow Redis stalls only the batch that needs it and never the Kafka consumer's event
loop (heartbeats, fetches). Connection blips and timeouts are retried by redis-py with
exponential backoff; when the retries run out the error becomes ``CacheUnavailable``. On a
Redis Cluster (``redis+cluster://``) the same code runs with the multi-key writes cut by hash
slot (``stream_app.cache.slots``); what that costs in atomicity is said where it happens.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import redis
from redis import exceptions
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from models.catalog import ItemRecord, encode_item
from stream_app.cache.base import (
    CacheUnavailable,
    UserRecs,
    decode_item_meta,
    decode_neighbors,
    encode_neighbors,
    fresh_positions,
    names_user,
)
from stream_app.cache.connect import SyncRedis, as_access, connect_redis, mget
from stream_app.cache.keys import STAT_NAMES, CacheKeys
from stream_app.cache.slots import split_by_slot
from stream_app.cache.trending import decayed_ranking, forward_increments, plan_epoch
from stream_app.settings import RedisAccess

T = TypeVar("T")

#: Errors worth a retry: the server or the network blinked. Anything else is a bug.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)
#: What else a cluster says while a master fails over (its slots are uncovered until a
#: replica is promoted): a blip too, once the cluster client's own retries ran out.
CLUSTER_TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    *TRANSIENT_ERRORS,
    exceptions.ClusterDownError,
    exceptions.TryAgainError,
    exceptions.SlotNotCoveredError,
    exceptions.RedisClusterUnreachableError,
)

#: ``ZINCRBY KEYS[1] ARGV[i+1] ARGV[i]`` for every (member, increment) pair of ARGV. The
#: per-batch writes are hundreds of one-key commands, and redis-py spends its client CPU per
#: pipelined command (queueing, encoding, packing, reading its reply); as one EVAL the batch is
#: one command with many arguments (measured: docs/stream.md, "Tuning"). EVAL, not EVALSHA:
#: the text is short, and a restarted Redis needs no SCRIPT LOAD round trip.
ZINCRBY_MANY = """
for i = 1, #ARGV, 2 do
  redis.call('ZINCRBY', KEYS[1], ARGV[i + 1], ARGV[i])
end
return #ARGV / 2
"""
#: ``SET KEYS[i] ARGV[i + 1]`` for every key, with ``EX ARGV[1]`` unless ARGV[1] is "0".
SET_MANY = """
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  if ttl > 0 then
    redis.call('SET', key, ARGV[i + 1], 'EX', ttl)
  else
    redis.call('SET', key, ARGV[i + 1])
  end
end
return #KEYS
"""

#: ``RecCache.write_refreshed`` as one script, so the check and the SET are one atomic step per
#: key: ``SET KEYS[i] ARGV[i + 2] EX ARGV[1]`` for each list key ``KEYS[i]`` (i >= 2) whose
#: cached value exists and is ``base.refresh_wanted`` (ARGV[2]: read_at_ms, ARGV[3]: the new
#: lists' session version or ""), then ``INCRBY KEYS[1]`` (the counter) by how many were set.
#: ``FIRST`` and ``SHIFT`` are filled in below: a cluster's variant has no counter key.
_REFRESH_LOOP = """
local ttl, read_at, session = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local written = 0
for i = FIRST, #KEYS do
  local cached = redis.call('GET', KEYS[i])
  if cached then
    local ok, stored = pcall(cjson.decode, cached)
    local wanted = true
    if ok and type(stored) == 'table' then
      local versions = stored['model_versions']
      local own = type(versions) == 'table' and versions['session'] or ''
      if own == cjson.null then own = '' end
      wanted = (tonumber(stored['computed_at']) or 0) <= read_at and tostring(own) ~= session
    end
    if wanted then
      redis.call('SET', KEYS[i], ARGV[i + SHIFT], 'EX', ttl)
      written = written + 1
    end
  end
end
"""
SET_REFRESHED = (
    _REFRESH_LOOP.replace("FIRST", "2").replace("SHIFT", "2")
    + "if written > 0 then\n  redis.call('INCRBY', KEYS[1], written)\nend\nreturn written\n"
)
#: :data:`SET_REFRESHED` for one slot's list keys alone (``KEYS[i]``, i >= 1): on a cluster the
#: counter lives in another slot, and is added to after the scripts ran.
SET_REFRESHED_UNCOUNTED = (
    _REFRESH_LOOP.replace("FIRST", "1").replace("SHIFT", "3") + "return written\n"
)


def queue_eval(pipe: Any, script: str, numkeys: int, *keys_and_args: Any) -> None:
    """Queue ``EVAL script numkeys keys... args...`` on ``pipe``: what ``pipe.eval`` sends, but
    redis-py's cluster pipeline has no ``eval`` (it routes the raw command by its keys' slot)."""
    pipe.execute_command("EVAL", script, numkeys, *keys_and_args)


def queue_set_many(
    pipe: Any, values: Mapping[str, bytes], ttl_s: int = 0, *, by_slot: bool = False
) -> None:
    """Queue one ``EVAL`` of :data:`SET_MANY` on ``pipe``: ``SET key value [EX ttl_s]`` for
    every item of ``values`` (nothing for none). ``by_slot`` (a cluster): one EVAL per hash
    slot's keys, since a script may only touch keys of one slot."""
    for group in split_by_slot(values) if by_slot else [values] if values else []:
        queue_eval(pipe, SET_MANY, len(group), *group, ttl_s, *group.values())


def queue_zincrby_many(pipe: Any, key: str, increments: Mapping[str, float]) -> None:
    """Queue one ``EVAL`` of :data:`ZINCRBY_MANY` on ``pipe``: ``ZINCRBY key inc member`` for
    every (member, inc) of ``increments`` (floats as redis-py sends them: ``repr``, exact)."""
    if increments:
        queue_eval(pipe, ZINCRBY_MANY, 1, key, *(x for pair in increments.items() for x in pair))


class RedisCache:
    """Trending zset, per-user JSON recs with TTL and counters, under one key prefix.

    ``retries`` with exponential backoff (50 ms doubling, capped at 1 s) ride out a Redis restart
    of a few seconds; after that a batch's writes are given up (``CacheUnavailable``).
    """

    def __init__(
        self,
        url: RedisAccess | str,
        keys: CacheKeys | None = None,
        *,
        retries: int = 6,
        socket_timeout_s: float = 5.0,
        max_trending: int = 50_000,
        max_decoded: int = 200_000,
    ) -> None:
        self.keys = keys or CacheKeys(cluster=as_access(url).cluster)
        self.max_trending = max_trending
        #: Redis key -> (raw value, decoded list) of the item lists read last; at most
        #: ``max_decoded`` entries (then emptied), callers must not mutate the lists
        self._decoded: dict[str, tuple[bytes, list[tuple[str, float]]]] = {}
        self.max_decoded = max_decoded
        access = as_access(url)
        self._connect = lambda: connect_redis(
            access,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
            retry_on_error=list(TRANSIENT_ERRORS),
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
            health_check_interval=30,
        )
        #: a Redis Cluster: multi-key writes are cut by slot (the keys must be ``cluster`` ones)
        self._cluster = access.cluster
        if self._cluster and not self.keys.cluster:
            raise ValueError("a Redis Cluster needs CacheKeys(..., cluster=True) (hash-tagged)")
        if not self._cluster:
            self._redis: SyncRedis = self._connect()  # redis.Redis connects on first command

    def __getattr__(self, name: str) -> Any:
        """``_redis`` of a cluster, opened on first use: ``RedisCluster`` asks for the slot map
        when it is made, and a cluster that is down must read as an outage the worker waits
        out (``CacheUnavailable`` from ``_call``), as one Redis does, not stop the start."""
        if name != "_redis" or self.__dict__.get("_cluster") is not True:
            raise AttributeError(name)
        self._redis = self._connect()
        return self._redis

    @property
    def client(self) -> SyncRedis:
        """The underlying client (for tests and the ``watch`` command's reads)."""
        return self._redis

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except CLUSTER_TRANSIENT_ERRORS as exc:
            raise CacheUnavailable(f"redis unavailable after retries: {exc}") from exc

    def ping(self) -> bool:
        return bool(self._call(lambda: self._redis.ping()))

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
        if not weights:
            return self.top_trending(top_k, half_life_s, now_ms)
        keys = self.keys
        used_epoch: list[float] = []
        watched = [keys.trending_epoch] + ([keys.hwm(hwm[0])] if hwm else [])

        def transaction(pipe: Any) -> None:
            # WATCH on the epoch: if another worker rescales meanwhile, redo with its epoch.
            # WATCH on the marks: during a rebalance the old owner may still finish a batch of
            # a partition the new owner already reads; only one of them counts each event.
            batch = weights
            marks: dict[int, int] | None = None
            if hwm:
                stored = {int(p): int(o) for p, o in pipe.hgetall(keys.hwm(hwm[0])).items()}
                keep, marks = fresh_positions(hwm[1], stored)
                batch = [weights[i] for i in keep]
            raw = pipe.get(keys.trending_epoch)
            current = float(raw) if raw is not None else None
            if not batch:  # all counted before: keep the epoch, add nothing
                used_epoch[:] = [current if current is not None else float(now_ms)]
                pipe.multi()
                for name, count in (counters or {}).items():
                    if count and name != "events":
                        pipe.incrby(keys.stat(name), int(count))
                pipe.zrevrange(keys.trending, 0, max(top_k, 1) - 1, withscores=True)
                return
            epoch, factor = plan_epoch(current, [ts for _, _, ts in batch], half_life_s)
            used_epoch[:] = [epoch]
            pipe.multi()
            if current is None or factor is not None:
                pipe.set(keys.trending_epoch, repr(float(epoch)))
            if factor is not None:
                pipe.zunionstore(keys.trending, {keys.trending: factor})
            increments = forward_increments(batch, epoch, half_life_s)
            if absent_only:
                pipe.zadd(keys.trending, increments, nx=True)
            else:
                queue_zincrby_many(pipe, keys.trending, increments)
            # Bound the set: items that fell this far down the ranking will never be shown.
            pipe.zremrangebyrank(keys.trending, 0, -(self.max_trending + 1))
            if hwm and marks:
                # Same MULTI as the increments: after a crash either both happened or neither.
                pipe.hset(keys.hwm(hwm[0]), mapping={str(p): o for p, o in marks.items()})
            for name, count in (counters or {}).items():
                if name == "events" and hwm:
                    count = len(batch)
                if count:
                    pipe.incrby(keys.stat(name), int(count))
            pipe.zrevrange(keys.trending, 0, max(top_k, 1) - 1, withscores=True)

        results: list[Any] = self._call(
            lambda: self._redis.transaction(transaction, *watched)  # type: ignore[arg-type,return-value]
        )
        stored = [(m.decode(), float(s)) for m, s in results[-1]]
        return decayed_ranking(stored, used_epoch[0], half_life_s, now_ms)[:top_k]

    def top_trending(self, k: int, half_life_s: float, now_ms: int) -> list[tuple[str, float]]:
        def read() -> tuple[Any, Any]:
            pipe = self._redis.pipeline(transaction=True)
            pipe.get(self.keys.trending_epoch)
            pipe.zrevrange(self.keys.trending, 0, max(k, 1) - 1, withscores=True)
            raw_epoch, members = pipe.execute()
            return raw_epoch, members

        raw_epoch, members = self._call(read)
        if raw_epoch is None:
            return []
        stored = [(m.decode(), float(s)) for m, s in members]
        return decayed_ranking(stored, float(raw_epoch), half_life_s, now_ms)[:k]

    def write_batch(
        self,
        recs: Sequence[UserRecs],
        ttl_s: int,
        stats: Mapping[str, int],
        hwm: tuple[str, Sequence[tuple[int, int]]] | None = None,
        state: Mapping[str, bytes] | None = None,
    ) -> None:
        if hwm is None:

            def write() -> None:
                pipe = self._redis.pipeline(transaction=False)
                self._queue_writes(pipe, recs, ttl_s, stats)
                queue_set_many(pipe, dict(state or {}), by_slot=self._cluster)
                pipe.execute()

            self._call(write)
            return
        marks_key = self.keys.hwm(hwm[0])
        in_multi = recs
        if self._cluster:
            # The users' lists spread over the slots, so they cannot share the marks' MULTI:
            # written first, "events counted" still means "their users' lists written" (a
            # crash in between writes them again on the replay, which counts the events then).
            self._call(lambda: self._set_lists(recs, ttl_s))
            in_multi = ()

        def transaction(pipe: Any) -> None:
            # The counters count each event once (see update_trending); the recs go in the same
            # MULTI, so "events counted" also means "their users' lists written".
            stored = {int(p): int(o) for p, o in pipe.hgetall(marks_key).items()}
            keep, marks = fresh_positions(hwm[1], stored)
            pipe.multi()
            if marks:
                pipe.hset(marks_key, mapping={str(p): o for p, o in marks.items()})
            self._queue_writes(pipe, in_multi, ttl_s, {**stats, "events": len(keep)})
            # The state (rankers' checkpoints) is under the shared hash tag: one slot with marks.
            queue_set_many(pipe, dict(state or {}))

        self._call(lambda: self._redis.transaction(transaction, marks_key))  # type: ignore[arg-type]

    def _queue_writes(
        self, pipe: Any, recs: Sequence[UserRecs], ttl_s: int, stats: Mapping[str, int]
    ) -> None:
        values = {self.keys.recs(r.user_id): r.to_json() for r in recs}
        queue_set_many(pipe, values, ttl_s, by_slot=self._cluster)
        for name, count in stats.items():
            if count:
                pipe.incrby(self.keys.stat(name), int(count))

    def _set_lists(self, recs: Sequence[UserRecs], ttl_s: int) -> None:
        """The users' lists alone, one script per slot, in one pipeline."""
        if recs:
            pipe = self._redis.pipeline(transaction=False)
            self._queue_writes(pipe, recs, ttl_s, {})
            pipe.execute()

    def write_refreshed(self, recs: Sequence[UserRecs], ttl_s: int, read_at_ms: int) -> int:
        by_session: dict[str, dict[str, bytes]] = {}
        for r in recs:
            session = r.model_versions.get("session") or ""
            by_session.setdefault(session, {})[self.keys.recs(r.user_id)] = r.to_json()
        if not by_session:
            return 0
        if self._cluster:
            return self._call(lambda: self._write_refreshed_by_slot(by_session, ttl_s, read_at_ms))

        def write() -> int:
            pipe = self._redis.pipeline(transaction=True)
            for session, values in by_session.items():
                keys = [self.keys.stat("refreshed"), *values]
                args: list[bytes | str | int] = [ttl_s, read_at_ms, session, *values.values()]
                queue_eval(pipe, SET_REFRESHED, len(keys), *keys, *args)
            return sum(int(n) for n in pipe.execute())

        return self._call(write)

    def _write_refreshed_by_slot(
        self, by_session: Mapping[str, Mapping[str, bytes]], ttl_s: int, read_at_ms: int
    ) -> int:
        """``write_refreshed`` on a cluster: the check-and-set stays one atomic script per slot;
        the counter (another slot) is added to afterwards, so a crash in between undercounts."""
        pipe = self._redis.pipeline(transaction=False)
        for session, values in by_session.items():
            for group in split_by_slot(values):
                args = [ttl_s, read_at_ms, session, *group.values()]
                queue_eval(pipe, SET_REFRESHED_UNCOUNTED, len(group), *group, *args)
        written = sum(int(n) for n in pipe.execute())
        if written:
            self._redis.incrby(self.keys.stat("refreshed"), written)
        return written

    def append_journal(self, key: str, entries: Sequence[bytes], keep: int) -> None:
        if not entries:
            return

        def push() -> None:
            pipe = self._redis.pipeline(transaction=True)
            pipe.lpush(key, *entries)
            pipe.ltrim(key, 0, keep - 1)
            pipe.execute()

        self._call(push)

    def read_journal(self, key: str, n: int) -> list[bytes]:
        return list(self._call(lambda: self._redis.lrange(key, 0, n - 1)))

    def read_state(self, keys: Sequence[str]) -> dict[str, bytes]:
        if not keys:
            return {}
        values = self._call(lambda: mget(self._redis, keys))
        return {k: v for k, v in zip(keys, values, strict=True) if v is not None}

    def read_hwm(self, topic: str) -> dict[int, int]:
        raw = self._call(lambda: self._redis.hgetall(self.keys.hwm(topic)))
        return {int(p): int(o) for p, o in raw.items()}

    def raise_marks(self, name: str, marks: Mapping[int, int]) -> None:
        if not marks:
            return
        marks_key = self.keys.hwm(name)

        def transaction(pipe: Any) -> None:
            stored = {int(p): int(o) for p, o in pipe.hgetall(marks_key).items()}
            higher = {str(p): o for p, o in marks.items() if o > stored.get(p, -1)}
            pipe.multi()
            if higher:
                pipe.hset(marks_key, mapping=higher)

        self._call(lambda: self._redis.transaction(transaction, marks_key))  # type: ignore[arg-type]

    def generation(self, candidate: str | None) -> dict[str, str]:
        def read() -> Any:
            pipe = self._redis.pipeline(transaction=True)
            if candidate is not None:
                pipe.hsetnx(self.keys.generation, "token", candidate)
            pipe.hgetall(self.keys.generation)
            return pipe.execute()[-1]

        fields = self._call(read)
        return {k.decode(): v.decode() for k, v in fields.items()}

    def mark_rebuilt(self, token: str, names: Sequence[str]) -> bool:
        key = self.keys.generation
        done: list[bool] = []

        def transaction(pipe: Any) -> None:
            current = pipe.hget(key, "token")
            done[:] = [current is not None and current.decode() == token]
            pipe.multi()
            if done[0] and names:
                pipe.hset(key, mapping=dict.fromkeys(names, token))

        self._call(lambda: self._redis.transaction(transaction, key))  # type: ignore[arg-type]
        return bool(done and done[0])

    def drop_generation(self) -> None:
        self._call(lambda: self._redis.delete(self.keys.generation))

    def count_once(self, stat: str, marks: str, positions: Sequence[tuple[int, int]]) -> int:
        marks_key = self.keys.hwm(marks)
        added: list[int] = []

        def transaction(pipe: Any) -> None:
            stored = {int(p): int(o) for p, o in pipe.hgetall(marks_key).items()}
            keep, moved = fresh_positions(positions, stored)
            added[:] = [len(keep)]
            pipe.multi()
            if keep:
                pipe.hset(marks_key, mapping={str(p): o for p, o in moved.items()})
                pipe.incrby(self.keys.stat(stat), len(keep))

        self._call(lambda: self._redis.transaction(transaction, marks_key))  # type: ignore[arg-type]
        return added[0] if added else 0

    def forget_users(
        self, user_ids: Sequence[str], marks: str, positions: Sequence[tuple[int, int]]
    ) -> int:
        marks_key, journal = self.keys.hwm(marks), self.keys.dead_letters
        added: list[int] = []
        lists = [self.keys.recs(u) for u in user_ids]
        if self._cluster and lists:
            # The lists spread over the slots: deleted before the marks move, so "counted
            # forgotten" still means "deleted" (deleting again on a replay is harmless).
            self._call(lambda: self._delete_by_slot(lists))

        def transaction(pipe: Any) -> None:
            stored = {int(p): int(o) for p, o in pipe.hgetall(marks_key).items()}
            keep, moved = fresh_positions(positions, stored)
            added[:] = [len(keep)]
            entries = pipe.lrange(journal, 0, -1)
            kept = [e for e in entries if not names_user(e, user_ids)]
            pipe.multi()
            if lists and not self._cluster:
                pipe.delete(*lists)
            if len(kept) < len(entries):
                pipe.delete(journal)
                if kept:
                    pipe.rpush(journal, *kept)
            if keep:
                pipe.hset(marks_key, mapping={str(p): o for p, o in moved.items()})
                pipe.incrby(self.keys.stat("forgotten"), len(keep))

        self._call(lambda: self._redis.transaction(transaction, marks_key, journal))  # type: ignore[arg-type]
        return added[0] if added else 0

    def _delete_by_slot(self, keys: Sequence[str]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for group in split_by_slot(dict.fromkeys(keys)):
            pipe.delete(*group)
        pipe.execute()

    def get_neighbors(self, item_ids: Sequence[str]) -> dict[str, list[tuple[str, float]]]:
        return self._item_lists(item_ids, self.keys.neighbors)

    def get_successors(self, item_ids: Sequence[str]) -> dict[str, list[tuple[str, float]]]:
        return self._item_lists(item_ids, self.keys.successors)

    def _item_lists(
        self, item_ids: Sequence[str], key_of: Callable[[str], str]
    ) -> dict[str, list[tuple[str, float]]]:
        if not item_ids:
            return {}
        keys = [key_of(i) for i in item_ids]
        values = self._call(lambda: mget(self._redis, keys))
        out: dict[str, list[tuple[str, float]]] = {}
        memo = self._decoded
        if len(memo) > self.max_decoded:
            memo.clear()
        for item_id, key, raw in zip(item_ids, keys, values, strict=True):
            if raw is None:
                continue
            # Most lists did not change since the last batch read them: comparing the bytes is
            # far cheaper than decoding the JSON again.
            seen = memo.get(key)
            if seen is not None and seen[0] == raw:
                out[item_id] = seen[1]
            else:
                out[item_id] = decode_neighbors(raw)
                memo[key] = (raw, out[item_id])
        return out

    def get_norms(self, item_ids: Sequence[str]) -> dict[str, float]:
        if not item_ids:
            return {}
        values = self._call(lambda: self._redis.hmget(self.keys.item_norms, list(item_ids)))
        return {i: float(v) for i, v in zip(item_ids, values, strict=True) if v is not None}

    def publish_neighbors(
        self,
        lists: Mapping[str, Sequence[tuple[str, float]]],
        norms: Mapping[str, float],
        successors: Mapping[str, Sequence[tuple[str, float]]] | None = None,
    ) -> None:
        def write() -> None:
            pipe = self._redis.pipeline(transaction=False)
            if norms:
                pipe.hset(self.keys.item_norms, mapping=dict(norms))
            values = {self.keys.neighbors(i): encode_neighbors(lst) for i, lst in lists.items()}
            for item_id, nexts in (successors or {}).items():
                values[self.keys.successors(item_id)] = encode_neighbors(nexts)
            queue_set_many(pipe, values, by_slot=self._cluster)
            pipe.execute()

        self._call(write)

    def write_catalog(self, records: Mapping[str, ItemRecord | None]) -> None:
        if not records:
            return
        keys = self.keys
        shown = {i: r for i, r in records.items() if r is not None}
        hidden = [i for i, r in shown.items() if r.hidden]
        visible = [i for i in records if i not in hidden]
        if self._cluster:
            self._call(lambda: self._write_catalog_by_slot(records, hidden, visible))
            return

        def write() -> None:
            # MULTI: a reader never sees an item's metadata and its hidden flag disagree.
            pipe = self._redis.pipeline(transaction=True)
            queue_set_many(pipe, {keys.item_meta(i): encode_item(r) for i, r in shown.items()})
            gone = [i for i, r in records.items() if r is None]
            if gone:
                pipe.delete(*(keys.item_meta(i) for i in gone))
                pipe.sadd(keys.deleted_items, *gone)
            if shown:
                pipe.srem(keys.deleted_items, *shown)
            if hidden:
                pipe.sadd(keys.hidden_items, *hidden)
            if visible:
                pipe.srem(keys.hidden_items, *visible)
            pipe.execute()

        self._call(write)

    def _write_catalog_by_slot(
        self, records: Mapping[str, ItemRecord | None], hidden: list[str], visible: list[str]
    ) -> None:
        """``write_catalog`` on a cluster, where the records (spread over the slots) cannot
        share the sets' MULTI: hiding and deleting go first and showing again goes last, so a
        reader may see a record late but never serves an item the update hides or deletes."""
        keys = self.keys
        shown = {i: r for i, r in records.items() if r is not None}
        gone = [i for i, r in records.items() if r is None]
        pipe = self._redis.pipeline(transaction=True)
        if gone:
            pipe.sadd(keys.deleted_items, *gone)
        if hidden:
            pipe.sadd(keys.hidden_items, *hidden)
        pipe.execute()
        pipe = self._redis.pipeline(transaction=False)
        queue_set_many(
            pipe, {keys.item_meta(i): encode_item(r) for i, r in shown.items()}, by_slot=True
        )
        for group in split_by_slot(dict.fromkeys(keys.item_meta(i) for i in gone)):
            pipe.delete(*group)
        pipe.execute()
        pipe = self._redis.pipeline(transaction=True)
        if shown:
            pipe.srem(keys.deleted_items, *shown)
        if visible:
            pipe.srem(keys.hidden_items, *visible)
        pipe.execute()

    def get_item_meta(self, item_ids: Sequence[str]) -> dict[str, ItemRecord]:
        if not item_ids:
            return {}
        raws = self._call(lambda: mget(self._redis, [self.keys.item_meta(i) for i in item_ids]))
        return decode_item_meta(item_ids, raws)

    def hidden_items(self) -> set[str]:
        members = self._call(lambda: self._redis.smembers(self.keys.hidden_items))
        return {m.decode() for m in members}

    def deleted_items(self) -> set[str]:
        members = self._call(lambda: self._redis.smembers(self.keys.deleted_items))
        return {m.decode() for m in members}

    def get_recs(self, user_id: str) -> UserRecs | None:
        raw = self._call(lambda: self._redis.get(self.keys.recs(user_id)))
        return None if raw is None else UserRecs.from_json(raw)

    def get_many_items(self, user_ids: Sequence[str]) -> dict[str, list[str]]:
        if not user_ids:
            return {}
        values = self._call(lambda: mget(self._redis, [self.keys.recs(u) for u in user_ids]))
        out: dict[str, list[str]] = {}
        for user_id, raw in zip(user_ids, values, strict=True):
            if raw is None:
                continue
            try:
                out[user_id] = UserRecs.item_ids_from_json(raw)
            except (ValueError, KeyError, TypeError):
                continue  # a damaged entry is "no cached list", not a crash
        return out

    def get_stats(self) -> dict[str, int]:
        values = self._call(lambda: mget(self._redis, [self.keys.stat(n) for n in STAT_NAMES]))
        return {
            name: int(v) if v is not None else 0 for name, v in zip(STAT_NAMES, values, strict=True)
        }

    def close(self) -> None:
        if "_redis" in self.__dict__:
            self._redis.close()
