"""A deterministic synthetic event stream with structure a good model can find and we can check.

Items fall into clusters with Zipf-like popularity inside each; every user has a sparse taste over
clusters and picks one per session; a session walks its cluster's hidden successor chain and, with
``resume_chain``, resumes it after a detour, so the next item can depend on an earlier one than
the last: a pattern session models can exploit and first-order Markov cannot. The ground truth
comes along (``dataset.planted``, a :class:`SyntheticWorld`) so tests and benchmarks can check
what a model recovered. Same config, same seed, same stream: byte for byte. The planted world,
sessions and timing in full: docs/datasets.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from models.catalog import ItemRecord
from models.datasets.base import EventDataset
from models.events import Interaction

_EVENT_TYPES = np.array(["view", "click", "add_to_cart", "purchase"])
_EVENT_TYPE_P = np.array([0.70, 0.17, 0.08, 0.05])


@dataclass(frozen=True, slots=True)
class SyntheticConfig:
    n_users: int = 2_000
    n_items: int = 1_000
    n_clusters: int = 20
    n_events: int = 100_000
    zipf_exponent: float = 1.0
    taste_concentration: float = 0.15
    follow_chain_p: float = 0.6
    resume_chain: bool = True
    noise_p: float = 0.05
    mean_session_length: float = 6.0
    mean_event_gap_s: float = 45.0
    min_session_gap_s: float = 7_200.0
    span_days: float = 60.0
    start_ms: int = 1_700_000_000_000
    seed: int = 7

    def resized(self, n_events: int) -> SyntheticConfig:
        """Scale users and items with the event count, keeping ~50 events per user."""
        scale = n_events / self.n_events
        n_users = max(50, int(self.n_users * scale))
        n_items = max(100, min(int(self.n_items * max(scale, 1.0) ** 0.5), 20_000))
        return replace(self, n_events=n_events, n_users=n_users, n_items=n_items)


@dataclass(frozen=True, slots=True)
class SyntheticWorld:
    """Ground truth of a generated stream, for checking what a model recovered."""

    item_cluster: dict[str, int]
    successor: dict[str, str]
    user_taste: dict[str, np.ndarray]
    resume_chain: bool = True

    def chain_position(self, session_items: Sequence[str]) -> str | None:
        """The session's current chain position, inferred from what the session shows.

        The first item starts the walk; an item that is the successor of the current position
        moves it; anything else is a detour (with ``resume_chain``) or a new position (without).
        The next chain step is ``successor[chain_position(prefix)]``.

        >>> world = SyntheticWorld({"a": 0, "b": 0, "c": 0, "x": 0},
        ...                        {"a": "b", "b": "c", "c": "a", "x": "a"}, {})
        >>> world.chain_position(["a", "b", "x"])   # x is a detour: the walk resumes at b
        'b'
        """
        position: str | None = None
        for item in session_items:
            if position is None or item == self.successor.get(position) or not self.resume_chain:
                position = item
        return position

    #: Zipf weight of each item inside its cluster (sums to 1 per cluster): the draw probability.
    item_popularity: dict[str, float] = field(default_factory=dict)


def _zipf_weights(n: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return weights / weights.sum()


@dataclass(frozen=True, slots=True)
class _Plant:
    """The hidden world as arrays over item and user numbers."""

    clusters: list[np.ndarray]  # each cluster's items, most popular first
    cluster_of: np.ndarray
    successor: np.ndarray  # each item's successor on its cluster's chain
    popularity: list[np.ndarray]  # each cluster's Zipf weights, in ``clusters`` order
    taste: np.ndarray  # users x clusters


def _plant(cfg: SyntheticConfig, rng: np.random.Generator) -> _Plant:
    """Clusters (a random partition; inside each, the order is the popularity rank), each
    with a random successor chain, and every user's cluster taste."""
    order = rng.permutation(cfg.n_items)
    clusters = [order[c :: cfg.n_clusters] for c in range(cfg.n_clusters)]
    cluster_of = np.empty(cfg.n_items, dtype=np.int64)
    successor = np.empty(cfg.n_items, dtype=np.int64)
    for c, members in enumerate(clusters):
        cluster_of[members] = c
        chain = rng.permutation(members)
        successor[chain] = np.roll(chain, -1)
    popularity = [_zipf_weights(len(members), cfg.zipf_exponent) for members in clusters]
    taste = rng.dirichlet(np.full(cfg.n_clusters, cfg.taste_concentration), size=cfg.n_users)
    return _Plant(clusters, cluster_of, successor, popularity, taste)


def _sessions(
    cfg: SyntheticConfig, rng: np.random.Generator, plant: _Plant
) -> list[tuple[int, int, int, str, int]]:
    """``(ts, user, item, type, session number)`` of every event, session by session until
    ``n_events`` (users drawn by a lognormal activity; sessions of one user at least
    ``min_session_gap_s`` apart)."""
    activity = rng.lognormal(mean=0.0, sigma=1.0, size=cfg.n_users)
    activity /= activity.sum()
    span_ms = cfg.span_days * 86_400_000
    next_free_ms = cfg.start_ms + rng.uniform(0, span_ms / 4, size=cfg.n_users)
    session_count = np.zeros(cfg.n_users, dtype=np.int64)
    sessions_needed = int(cfg.n_events / cfg.mean_session_length * 1.2) + 10
    session_users = rng.choice(cfg.n_users, size=sessions_needed, p=activity)
    rows: list[tuple[int, int, int, str, int]] = []
    for user in session_users:
        if len(rows) >= cfg.n_events:
            break
        ts = _walk(cfg, rng, plant, int(user), next_free_ms[user], int(session_count[user]), rows)
        session_count[user] += 1
        gap = cfg.min_session_gap_s * 1000 + rng.exponential(
            span_ms * cfg.n_users / sessions_needed
        )
        next_free_ms[user] = ts + gap
    return rows[: cfg.n_events]


def _walk(
    cfg: SyntheticConfig,
    rng: np.random.Generator,
    plant: _Plant,
    user: int,
    ts: float,
    session: int,
    rows: list[tuple[int, int, int, str, int]],
) -> float:
    """Append one session of ``user`` starting at ``ts`` to ``rows``; return its last time.

    Each step follows the chain from the session's position, or detours (a cluster-popular
    item, or noise) leaving the position where it was unless ``resume_chain`` is off."""
    length = 1 + rng.geometric(1.0 / cfg.mean_session_length)
    cluster = rng.choice(cfg.n_clusters, p=plant.taste[user])
    members, weights = plant.clusters[cluster], plant.popularity[cluster]
    item = members[rng.choice(len(members), p=weights)]
    position = item  # the session's place on its cluster's chain
    for step in range(length):
        if step > 0:
            draw = rng.random()
            if draw < cfg.noise_p:
                item = rng.integers(cfg.n_items)
            elif draw < cfg.noise_p + cfg.follow_chain_p:
                item = plant.successor[position]
                position = item
            else:
                item = members[rng.choice(len(members), p=weights)]
            if not cfg.resume_chain:
                position = item
            ts += rng.exponential(cfg.mean_event_gap_s * 1000) + 1000
        event_type = str(rng.choice(_EVENT_TYPES, p=_EVENT_TYPE_P))
        rows.append((int(ts), user, int(item), event_type, session))
    return ts


def _world(
    cfg: SyntheticConfig, plant: _Plant, item_ids: list[str], user_ids: list[str]
) -> SyntheticWorld:
    """The ground truth under the stream's item and user ids."""
    return SyntheticWorld(
        item_cluster={item_ids[i]: int(plant.cluster_of[i]) for i in range(cfg.n_items)},
        successor={item_ids[i]: item_ids[int(plant.successor[i])] for i in range(cfg.n_items)},
        user_taste={user_ids[u]: plant.taste[u] for u in range(cfg.n_users)},
        resume_chain=cfg.resume_chain,
        item_popularity={
            item_ids[int(i)]: float(w)
            for members, weights in zip(plant.clusters, plant.popularity, strict=True)
            for i, w in zip(members, weights, strict=True)
        },
    )


def _records(plant: _Plant, item_ids: list[str]) -> list[ItemRecord]:
    """The catalog: each item's category is its planted cluster (``c{cluster}``), so content
    similarity has the same ground truth the neighbours are checked against."""
    return [
        ItemRecord(item_id, f"Item {n}", (f"c{int(plant.cluster_of[n])}",))
        for n, item_id in enumerate(item_ids)
    ]


def synthetic_catalog(config: SyntheticConfig | None = None) -> list[ItemRecord]:
    """The item records of ``generate_synthetic(config)`` without generating its events: the
    clusters are the first draws of the seeded generator.

    >>> cfg = SyntheticConfig(n_users=20, n_items=50, n_clusters=5, n_events=500, seed=1)
    >>> synthetic_catalog(cfg) == generate_synthetic(cfg).catalog
    True
    """
    cfg = config or SyntheticConfig()
    plant = _plant(cfg, np.random.default_rng(cfg.seed))
    return _records(plant, [f"i{n}" for n in range(cfg.n_items)])


def generate_synthetic(config: SyntheticConfig | None = None) -> EventDataset:
    """Generate the stream of ``config`` (the planted world: docs/datasets.md).

    >>> ds = generate_synthetic(SyntheticConfig(n_users=20, n_items=50, n_clusters=5,
    ...                                         n_events=500, seed=1))
    >>> len(ds.events), ds.events == generate_synthetic(SyntheticConfig(
    ...     n_users=20, n_items=50, n_clusters=5, n_events=500, seed=1)).events
    (500, True)
    """
    cfg = config or SyntheticConfig()
    rng = np.random.default_rng(cfg.seed)
    item_ids = [f"i{n}" for n in range(cfg.n_items)]
    user_ids = [f"u{n}" for n in range(cfg.n_users)]
    plant = _plant(cfg, rng)
    events = [
        Interaction(
            user_id=user_ids[u],
            item_id=item_ids[i],
            event_type=etype,
            timestamp_ms=ts,
            session_id=f"{user_ids[u]}-s{s}",
        )
        for ts, u, i, etype, s in _sessions(cfg, rng, plant)
    ]
    items = {item_ids[i]: {"category": f"c{int(plant.cluster_of[i])}"} for i in range(cfg.n_items)}
    world = _world(cfg, plant, item_ids, user_ids)
    catalog = _records(plant, item_ids)
    return EventDataset("synthetic", events, items, planted=world, catalog=catalog).sort()
