"""What the stream worker stores and reads, independent of where: value types and the interface.

Backends (``RedisCache`` for production, ``MemoryCache`` for tests and dry runs) implement
``RecCache``; one contract test suite runs against both. Errors are sorted at this boundary:
a backend retries connection blips itself and, when it gives up, raises ``CacheUnavailable``
(the caller degrades: logs, counts, carries on); anything else is a bug and propagates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


class CacheUnavailable(RuntimeError):
    """The cache could not be reached after retries; the caller should degrade, not crash."""


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One recommended item with the score it was ranked by and a human-readable reason."""

    item_id: str
    score: float
    reason: str

    def to_json_dict(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "score": round(self.score, 6), "reason": self.reason}


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

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "user_id": self.user_id,
                "items": [r.to_json_dict() for r in self.items],
                "model_versions": dict(self.model_versions),
                "computed_at": self.computed_at,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> UserRecs:
        data = json.loads(raw)
        return cls(
            user_id=str(data["user_id"]),
            items=tuple(
                Recommendation(str(r["item_id"]), float(r["score"]), str(r["reason"]))
                for r in data["items"]
            ),
            model_versions={str(k): str(v) for k, v in data.get("model_versions", {}).items()},
            computed_at=int(data.get("computed_at", 0)),
        )


@runtime_checkable
class RecCache(Protocol):
    """Where the worker keeps trending popularity, per-user top-N and its counters."""

    def update_trending(
        self,
        weights: Sequence[tuple[str, float, int]],
        half_life_s: float,
        now_ms: int,
        top_k: int,
    ) -> list[tuple[str, float]]:
        """Add ``(item_id, weight, timestamp_ms)`` observations with forward decay, then return
        the ``top_k`` items by popularity decayed to ``now_ms``, best first (ties: item id)."""
        ...

    def top_trending(self, k: int, half_life_s: float, now_ms: int) -> list[tuple[str, float]]:
        """The current top ``k`` without adding anything."""
        ...

    def write_batch(self, recs: Sequence[UserRecs], ttl_s: int, stats: Mapping[str, int]) -> None:
        """Store every user's top-N with a TTL and add ``stats`` to the counters, in one go."""
        ...

    def get_recs(self, user_id: str) -> UserRecs | None: ...

    def get_many_recs(self, user_ids: Sequence[str]) -> dict[str, UserRecs]:
        """The cached lists of those users that have one (one round trip); damaged entries are
        left out, never raised."""
        ...

    def get_stats(self) -> dict[str, int]: ...

    def close(self) -> None: ...
