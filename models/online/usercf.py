"""User-based CF made affordable online: neighbours found through a capped item->users index.

Cosine between users over their full interaction vectors is O(users) per request. Instead, each
item remembers only its ``users_per_item`` most recent users (a recency sample of its inverted
list); a user's candidate neighbours are the users found under her recent items, their overlap
counted on the way, and ``overlap / sqrt(|recent_u| * |recent_v|)`` is the cosine of the two
users' binary recent-item vectors. Cost per request: ``recent * users_per_item`` dict updates.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from models.online.history import UserHistory


class UserNeighbors:
    """Item -> recent users index and the "similar users liked" score vector.

    Examples
    --------
    >>> h = UserHistory()
    >>> ucf = UserNeighbors(h, users_per_item=5)
    >>> for user, items in {"a": [0, 1, 2], "b": [0, 1, 3], "c": [4]}.items():
    ...     for item in items:
    ...         _ = h.learn_one(user, item, 1.0, "view", 0); ucf.learn_one(user, item)
    >>> ucf.scores("a", 5).round(3).tolist()   # b shares 2 of 3 items with a: cosine 2/3
    [0.667, 0.667, 0.0, 0.667, 0.0]
    """

    def __init__(
        self,
        history: UserHistory,
        users_per_item: int = 20,
        recent_items: int = 20,
        max_neighbors: int = 30,
    ) -> None:
        self.history = history
        self.users_per_item = users_per_item
        self.recent_items = recent_items
        self.max_neighbors = max_neighbors
        self._item_users: dict[int, deque[str]] = {}

    def learn_one(self, user_id: str, item: int) -> None:
        users = self._item_users.get(item)
        if users is None:
            users = self._item_users[item] = deque(maxlen=self.users_per_item)
        elif user_id in users:
            users.remove(user_id)
        users.append(user_id)

    def neighbors(self, user_id: str) -> list[tuple[str, float]]:
        state = self.history.get(user_id)
        if state is None:
            return []
        mine = set(state.items[-self.recent_items :])
        overlap: dict[str, int] = {}
        for item in mine:
            for other in self._item_users.get(item, ()):
                if other != user_id:
                    overlap[other] = overlap.get(other, 0) + 1
        scored = []
        users = self.history.users
        recent = self.recent_items
        for other, count in overlap.items():
            # Size of the other's recent window (repeats counted: cheap, and exact when distinct).
            size = min(len(users[other].items), recent)
            scored.append((other, count / math.sqrt(len(mine) * size)))
        scored.sort(key=lambda pair: -pair[1])
        return scored[: self.max_neighbors]

    def scores(self, user_id: str, n: int) -> np.ndarray:
        out = np.zeros(n)
        for other, sim in self.neighbors(user_id):
            idx = np.asarray(self.history.users[other].items[-self.recent_items :])
            # Fancy-index += adds once per distinct index: a neighbour's repeats count once.
            out[idx[idx < n]] += sim
        return out
