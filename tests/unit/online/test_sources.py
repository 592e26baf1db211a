"""User history, user-based CF and content similarity on hand-checkable examples."""

from __future__ import annotations

import numpy as np
import pytest

from models.online.content import ContentSimilarity, item_attributes
from models.online.history import UserHistory
from models.online.usercf import UserNeighbors


def test_history_bounds_and_sessions():
    h = UserHistory(max_len=3, max_consumed=4, session_gap_s=60.0)
    for n, item in enumerate([1, 2, 3, 4, 5]):
        h.learn_one("u", item, 1.0, "view", n * 1_000)
    state = h.get("u")
    assert state is not None
    assert state.items == [3, 4, 5]
    assert sorted(h.consumed("u").tolist()) == [2, 3, 4, 5]  # oldest consumed forgotten
    h.learn_one("u", 6, 1.0, "view", 10 * 60_000)  # after a gap > 60 s: a new session
    assert state.items[state.session_start :] == [6]


def test_user_neighbors_cosine_by_hand():
    h = UserHistory()
    ucf = UserNeighbors(h, users_per_item=10)
    data = {"a": [0, 1, 2, 3], "b": [0, 1, 4], "c": [3, 5], "d": [6]}
    for user, items in data.items():
        for item in items:
            h.learn_one(user, item, 1.0, "view", 0)
            ucf.learn_one(user, item)
    neighbors = dict(ucf.neighbors("a"))
    assert neighbors["b"] == pytest.approx(2 / np.sqrt(4 * 3))
    assert neighbors["c"] == pytest.approx(1 / np.sqrt(4 * 2))
    assert "d" not in neighbors
    scores = ucf.scores("a", 7)
    assert scores[4] == pytest.approx(neighbors["b"])
    assert scores[5] == pytest.approx(neighbors["c"])
    assert scores[6] == 0.0


def test_user_neighbors_inverted_index_is_capped():
    h = UserHistory()
    ucf = UserNeighbors(h, users_per_item=3)
    for n in range(10):
        h.learn_one(f"u{n}", 0, 1.0, "view", 0)
        ucf.learn_one(f"u{n}", 0)
    assert list(ucf._item_users[0]) == ["u7", "u8", "u9"]


def test_content_similarity_by_hand():
    c = ContentSimilarity()
    c.set_item(0, item_attributes({"genres": ["Drama", "War"]}))
    c.set_item(1, item_attributes({"genres": ["Drama"]}))
    c.set_item(2, item_attributes({"genres": ["Comedy"]}))
    scores = c.scores(np.array([0]), np.array([1.0]), 3)
    assert scores.tolist() == pytest.approx([1.0, 1 / np.sqrt(2), 0.0])
