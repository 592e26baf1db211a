"""The one place Redis key names are built: every reader and writer goes through ``CacheKeys``.

Every key starts with a version prefix (``settings.redis_key_prefix``, ``streamrec:v1``) so a
change of value format ships as ``streamrec:v2`` side by side with the old keys instead of
breaking readers that still expect v1. On a Redis Cluster the shared keys (trending, marks,
counters, ...) carry the prefix as a hash tag, ``{streamrec:v1}:...``, so the transactions over
them stay in one slot; per-user and per-item keys do not, and spread over the cluster. The keys
and their values: docs/stream.md, "Redis key schema".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stream_app.settings import Settings

#: Counters the worker maintains under ``{prefix}:stats:{name}``.
STAT_NAMES: tuple[str, ...] = (
    "events",
    "dlq",
    "item_dlq",
    "catalog_dlq",
    "control_dlq",
    "forgotten",
    "batches",
    "recs_written",
    "redis_errors",
    "refreshed",
)


def sent_marks(topic: str) -> str:
    """The marks name of ``topic``'s events whose item deltas a batch was about to send: moved
    before the sends, so after a crash the events up to them are known to have deltas that
    may be applied already (``UserSide.send_deltas`` stamps those apart).

    >>> CacheKeys("streamrec:v1").hwm(sent_marks("events"))
    'streamrec:v1:hwm:events:sent'
    """
    return f"{topic}:sent"


def counted_marks(topic: str) -> str:
    """The marks name (``CacheKeys.hwm(name)``) of ``topic``'s events counted with the recs;
    ``topic``'s own marks are trending's.

    >>> CacheKeys("streamrec:v1").hwm(counted_marks("events"))
    'streamrec:v1:hwm:events:counted'
    """
    return f"{topic}:counted"


@dataclass(frozen=True, slots=True)
class CacheKeys:
    """Builds the Redis key names for one key prefix.

    Examples
    --------
    >>> keys = CacheKeys("streamrec:v1")
    >>> keys.recs("42"), keys.trending, keys.stat("events")
    ('streamrec:v1:recs:42', 'streamrec:v1:trending', 'streamrec:v1:stats:events')
    >>> keys.user_from_recs_key("streamrec:v1:recs:u:7")
    'u:7'
    >>> cluster = CacheKeys("streamrec:v1", cluster=True)
    >>> cluster.recs("42"), cluster.trending, cluster.hwm("events")
    ('streamrec:v1:recs:42', '{streamrec:v1}:trending', '{streamrec:v1}:hwm:events')
    """

    prefix: str = "streamrec:v1"
    #: Redis Cluster: the shared keys go under the hash tag ``{prefix}`` (one slot)
    cluster: bool = False

    def __post_init__(self) -> None:
        if not self.prefix or self.prefix.endswith(":"):
            raise ValueError(f"key prefix {self.prefix!r} must be non-empty without a trailing ':'")
        if any(c in self.prefix for c in "{}"):
            raise ValueError(f"key prefix {self.prefix!r} must not hold a hash tag's braces")

    @classmethod
    def for_settings(cls, settings: Settings) -> CacheKeys:
        """The keys every process of ``settings`` uses: the prefix, hash-tagged on a cluster."""
        return cls(settings.redis_key_prefix, cluster=settings.redis.cluster)

    @property
    def shared_prefix(self) -> str:
        """Prefix of the keys one transaction may touch together (trending and its epoch, the
        marks, counters, checkpoints, journals, catalog sets): on a cluster a hash tag, so
        they hash to one slot; one slot is also one master's load, which these few keys are."""
        return f"{{{self.prefix}}}" if self.cluster else self.prefix

    def recs(self, user_id: str) -> str:
        """A user's cached top-N (JSON string with a TTL)."""
        return f"{self.prefix}:recs:{user_id}"

    @property
    def recs_pattern(self) -> str:
        """``SCAN MATCH`` pattern over every user's recommendations."""
        return f"{self.prefix}:recs:*"

    def user_from_recs_key(self, key: str) -> str:
        """Inverse of :meth:`recs` (user ids may themselves contain ':')."""
        head = f"{self.prefix}:recs:"
        if not key.startswith(head):
            raise ValueError(f"{key!r} is not a recommendations key under {self.prefix!r}")
        return key[len(head) :]

    @property
    def trending(self) -> str:
        """Sorted set of items by forward-decayed popularity."""
        return f"{self.shared_prefix}:trending"

    @property
    def trending_epoch(self) -> str:
        """Epoch (ms) the forward weights in :attr:`trending` are relative to."""
        return f"{self.shared_prefix}:trending:epoch"

    def neighbors(self, item_id: str) -> str:
        """Top-M similar items of ``item_id`` (JSON list of ``[item_id, cosine]``)."""
        return f"{self.prefix}:neighbors:{item_id}"

    def successors(self, item_id: str) -> str:
        """Items users went to next after ``item_id`` (JSON list of ``[item_id, probability]``)."""
        return f"{self.prefix}:successors:{item_id}"

    def item_meta(self, item_id: str) -> str:
        """An item's catalog record (JSON string, ``models.catalog``), kept by the catalog side."""
        return f"{self.prefix}:item:{item_id}"

    @property
    def hidden_items(self) -> str:
        """Set of the ids of catalog items marked hidden (never served)."""
        return f"{self.shared_prefix}:items:hidden"

    @property
    def deleted_items(self) -> str:
        """Set of the ids of items the catalog deleted (tombstones): never served, until a
        newer record of the id brings it back."""
        return f"{self.shared_prefix}:items:deleted"

    @property
    def item_norms(self) -> str:
        """Hash item_id -> squared co-occurrence norm (the item side's cosine denominators)."""
        return f"{self.shared_prefix}:item_norms"

    @property
    def generation(self) -> str:
        """Hash: ``token`` (which life of this Redis' data the keys belong to) and one field
        per rebuilt stage and partition (``items:3`` -> the token it was rebuilt under). Its
        absence after a successful connection means Redis lost its data (or is new):
        ``stream_app.worker.rebuild``."""
        return f"{self.shared_prefix}:generation"

    def hwm(self, topic: str) -> str:
        """Hash partition -> last offset of ``topic`` already counted (idempotent counters)."""
        return f"{self.shared_prefix}:hwm:{topic}"

    @property
    def dead_letters(self) -> str:
        """List of the newest dead letters (JSON objects, newest first, capped)."""
        return f"{self.shared_prefix}:dlq:recent"

    @property
    def model_decisions(self) -> str:
        """List of the session-model slot's decisions: swaps and refusals with the gate's
        reason (JSON objects, newest first, capped)."""
        return f"{self.shared_prefix}:models:decisions"

    def ranker(self, partition: int) -> str:
        """A user-side partition's ranker state (JSON), checkpointed with the counted marks."""
        return f"{self.shared_prefix}:ranker:{partition}"

    def stat(self, name: str) -> str:
        """An integer counter, one of :data:`STAT_NAMES`."""
        if name not in STAT_NAMES:
            raise ValueError(f"unknown stat {name!r}; known: {', '.join(STAT_NAMES)}")
        return f"{self.shared_prefix}:stats:{name}"
