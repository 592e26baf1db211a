"""Online learning code: statistics and models updated per event, with no I/O.

See docs/online-models.md. The stream worker needs only the names re-exported here. The
recommender and snapshot names are imported on first use: they pull in River, and importing
``models.online.decay`` (the Redis trending set uses it) should not.
"""

from __future__ import annotations

import importlib
from typing import Any

from models.online.cooccurrence import ItemSimilarity, PairDelta, pair_deltas, pair_weights
from models.online.history import UserHistory
from models.online.markov import Transitions
from models.online.popularity import DecayedPopularity, Trending

_LAZY = {
    "OnlineRecommender": "models.online.recommender",
    "Recommendation": "models.online.recommender",
    "SnapshotError": "models.online.snapshot",
    "load_snapshot": "models.online.snapshot",
    "save_snapshot": "models.online.snapshot",
}

__all__ = [
    "DecayedPopularity",
    "ItemSimilarity",
    "OnlineRecommender",
    "PairDelta",
    "Recommendation",
    "SnapshotError",
    "Transitions",
    "Trending",
    "UserHistory",
    "load_snapshot",
    "pair_deltas",
    "pair_weights",
    "save_snapshot",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'models.online' has no attribute {name!r}")
