"""Per-user state kept by the user-partitioned side: recent items, consumed set, session."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(slots=True)
class UserState:
    """One user's bounded history (item indices of the shared vocabulary, oldest first)."""

    items: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    event_types: list[str] = field(default_factory=list)
    consumed: dict[int, None] = field(default_factory=dict)
    last_ms: int = 0
    session_start: int = 0  # position in ``items`` where the current session began
    n_events: int = 0


class UserHistory:
    """Recent items of every user, bounded per user by configuration.

    Parameters
    ----------
    max_len
        Recent events kept per user (the co-occurrence window and the recommender read these).
    max_consumed
        Distinct items remembered per user for the "already consumed" filter (oldest forgotten).
    session_gap_s
        Inactivity that starts a new session.

    Examples
    --------
    >>> h = UserHistory(max_len=2)
    >>> for item in (1, 2, 3):
    ...     _ = h.learn_one("u", item, 1.0, "view", 1_000 * item)
    >>> h.get("u").items, sorted(h.consumed("u").tolist())
    ([2, 3], [1, 2, 3])
    """

    def __init__(
        self, max_len: int = 200, max_consumed: int = 5_000, session_gap_s: float = 1_800.0
    ) -> None:
        self.max_len = max_len
        self.max_consumed = max_consumed
        self.session_gap_s = session_gap_s
        self.users: dict[str, UserState] = {}

    def get(self, user_id: str) -> UserState | None:
        return self.users.get(user_id)

    def learn_one(
        self, user_id: str, item: int, weight: float, event_type: str, timestamp_ms: int
    ) -> UserState:
        state = self.users.get(user_id)
        if state is None:
            state = self.users[user_id] = UserState()
        if state.n_events and timestamp_ms - state.last_ms > self.session_gap_s * 1000:
            state.session_start = len(state.items)
        state.items.append(item)
        state.weights.append(weight)
        state.event_types.append(event_type)
        if len(state.items) > self.max_len:
            drop = len(state.items) - self.max_len
            del state.items[:drop], state.weights[:drop], state.event_types[:drop]
            state.session_start = max(0, state.session_start - drop)
        state.consumed.pop(item, None)
        state.consumed[item] = None
        if len(state.consumed) > self.max_consumed:
            del state.consumed[next(iter(state.consumed))]
        state.last_ms = timestamp_ms
        state.n_events += 1
        return state

    def consumed(self, user_id: str) -> np.ndarray:
        state = self.users.get(user_id)
        if state is None:
            return np.empty(0, dtype=np.int64)
        return np.fromiter(state.consumed, dtype=np.int64, count=len(state.consumed))

    def __len__(self) -> int:
        return len(self.users)
