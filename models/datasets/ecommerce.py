"""A deterministic e-commerce click log: categories, repeat views and view -> cart -> purchase.

Where the ``synthetic`` stream plants a chain for session models to find, this one is shaped
like the small shop logs on which published comparisons find S-POP and session-kNN hard to
beat: short sessions inside one category, items viewed again within a session, similar items
viewed one after another, and a funnel in which a carted item is often bought at the end of the
session. It is a held-out stream: nothing in the repository was tuned on it. Same config, same
seed, same stream. The world and its rates: docs/datasets.md, "The e-commerce stream".
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from models.catalog import ItemRecord
from models.datasets.base import EventDataset
from models.events import Interaction


@dataclass(frozen=True, slots=True)
class EcommerceConfig:
    """The shop's size and its visitors' habits (probabilities are per step of a session)."""

    n_users: int = 1_500
    n_items: int = 3_000
    n_categories: int = 40
    n_events: int = 40_000
    zipf_exponent: float = 1.1
    taste_concentration: float = 0.1
    #: similar items of each item (same category): what a visitor moves to from it
    n_similar: int = 6
    mean_session_views: float = 5.0
    repeat_p: float = 0.25
    similar_p: float = 0.40
    category_p: float = 0.25  # the rest (1 - the three): anything in the shop, by popularity
    cart_p: float = 0.12
    purchase_p: float = 0.5
    mean_event_gap_s: float = 40.0
    span_days: float = 30.0
    start_ms: int = 1_700_000_000_000
    seed: int = 11

    def resized(self, n_events: int) -> EcommerceConfig:
        """Users and items scaled with the event count (about 27 events per user)."""
        scale = n_events / self.n_events
        return replace(
            self,
            n_events=n_events,
            n_users=max(30, int(self.n_users * scale)),
            n_items=max(100, int(self.n_items * scale**0.5)),
        )


@dataclass(frozen=True, slots=True)
class EcommerceWorld:
    """The planted shop: each item's category and similar items (ground truth for tests)."""

    item_category: dict[str, int]
    similar: dict[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class _Shop:
    categories: list[np.ndarray]  # each category's items, most popular first
    category_of: np.ndarray
    weights: list[np.ndarray]  # Zipf weights inside each category
    global_p: np.ndarray
    similar: np.ndarray  # items x n_similar
    taste: np.ndarray  # users x categories


def _shop(cfg: EcommerceConfig, rng: np.random.Generator) -> _Shop:
    order = rng.permutation(cfg.n_items)
    categories = [order[c :: cfg.n_categories] for c in range(cfg.n_categories)]
    category_of = np.empty(cfg.n_items, np.int64)
    weights = []
    global_p = np.zeros(cfg.n_items)
    similar = np.empty((cfg.n_items, cfg.n_similar), np.int64)
    for c, members in enumerate(categories):
        category_of[members] = c
        w = 1.0 / np.arange(1, len(members) + 1) ** cfg.zipf_exponent
        weights.append(w / w.sum())
        global_p[members] = w / w.sum() / cfg.n_categories
        for item in members:  # similar items: popular ones of the category more often
            others = members[members != item]
            p = weights[-1][members != item]
            similar[item] = rng.choice(others, cfg.n_similar, replace=False, p=p / p.sum())
    taste = rng.dirichlet(np.full(cfg.n_categories, cfg.taste_concentration), size=cfg.n_users)
    return _Shop(categories, category_of, weights, global_p / global_p.sum(), similar, taste)


def _next_view(cfg: EcommerceConfig, rng: np.random.Generator, shop: _Shop, views: list[int],
               category: int) -> int:  # fmt: skip
    """The session's next view: again one of its last three views, a similar item of the
    last, a popular item of its category, or anything in the shop."""
    draw = rng.random()
    if draw < cfg.repeat_p:
        return int(rng.choice(views[-3:]))
    if draw < cfg.repeat_p + cfg.similar_p:
        return int(rng.choice(shop.similar[views[-1]]))
    if draw < cfg.repeat_p + cfg.similar_p + cfg.category_p:
        members = shop.categories[category]
        return int(members[rng.choice(len(members), p=shop.weights[category])])
    return int(rng.choice(cfg.n_items, p=shop.global_p))


def _session(cfg: EcommerceConfig, rng: np.random.Generator, shop: _Shop, user: int,
             ts: float) -> tuple[list[tuple[int, int, str]], float]:  # fmt: skip
    """One visit: ``(ts, item, type)`` rows and its last time. Every view may put the item in
    the cart right after; each carted item may be bought at the end of the visit."""
    category = int(rng.choice(cfg.n_categories, p=shop.taste[user]))
    members = shop.categories[category]
    views = [int(members[rng.choice(len(members), p=shop.weights[category])])]
    length = rng.geometric(1.0 / cfg.mean_session_views)
    rows: list[tuple[int, int, str]] = []
    carted: list[int] = []
    for step in range(length):
        if step:
            views.append(_next_view(cfg, rng, shop, views, category))
            ts += rng.exponential(cfg.mean_event_gap_s * 1000) + 1000
        rows.append((int(ts), views[-1], "view"))
        if views[-1] not in carted and rng.random() < cfg.cart_p:
            ts += rng.exponential(10_000) + 1000
            rows.append((int(ts), views[-1], "add_to_cart"))
            carted.append(views[-1])
    for item in carted:
        if rng.random() < cfg.purchase_p:
            ts += rng.exponential(30_000) + 1000
            rows.append((int(ts), item, "purchase"))
    return rows, ts


def generate_ecommerce(config: EcommerceConfig | None = None) -> EventDataset:
    """The click log of ``config``, in stream order, with its catalog and planted world.

    >>> ds = generate_ecommerce(EcommerceConfig().resized(600))
    >>> len(ds.events), {e.event_type for e in ds.events} == {"view", "add_to_cart", "purchase"}
    (600, True)
    """
    cfg = config or EcommerceConfig()
    rng = np.random.default_rng(cfg.seed)
    shop = _shop(cfg, rng)
    activity = rng.lognormal(0.0, 1.0, cfg.n_users)
    # visits arrive uniformly over the span, each from a user drawn by her activity (a user
    # still in her previous visit starts after it), so every stretch of the log is alike
    starts = np.sort(rng.uniform(0, cfg.span_days * 86_400_000, int(cfg.n_events / 4) + 10))
    users = rng.choice(cfg.n_users, size=starts.size, p=activity / activity.sum())
    busy_until = np.zeros(cfg.n_users)
    events: list[Interaction] = []
    visits = np.zeros(cfg.n_users, np.int64)
    for start, user in zip(starts.tolist(), users.tolist(), strict=True):
        if len(events) >= cfg.n_events:
            break
        begin = max(cfg.start_ms + start, busy_until[user] + 600_000)
        rows, busy_until[user] = _session(cfg, rng, shop, user, begin)
        sid = f"u{user}-s{visits[user]}"
        events.extend(
            Interaction(f"u{user}", f"p{i}", kind, t, session_id=sid) for t, i, kind in rows
        )
        visits[user] += 1
    events = sorted(events[: cfg.n_events], key=lambda e: (e.timestamp_ms, e.user_id, e.item_id))
    names = [f"p{n}" for n in range(cfg.n_items)]
    world = EcommerceWorld(
        {names[i]: int(shop.category_of[i]) for i in range(cfg.n_items)},
        {names[i]: tuple(names[j] for j in shop.similar[i]) for i in range(cfg.n_items)},
    )
    catalog = [
        ItemRecord(names[i], f"Product {i}", (f"cat{int(shop.category_of[i])}",))
        for i in range(cfg.n_items)
    ]
    items = {r.item_id: {"category": r.categories[0]} for r in catalog}
    return EventDataset("ecommerce", events, items, planted=world, catalog=catalog)
