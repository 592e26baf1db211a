"""Each statistic against a small example computed by hand, and the memory bound."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from models.online.cooccurrence import ItemSimilarity, pair_deltas, pair_weights
from models.online.markov import Transitions
from models.online.popularity import DecayedPopularity, Trending
from models.online.ranking import top_k
from models.online.rows import CappedRows

HOUR_MS = 3_600_000


def test_decayed_popularity_matches_hand_computed_halving():
    pop = DecayedPopularity(half_life_s=3600.0)
    pop.learn_one("a", 2.0, 0)  # worth 2 * 2**-2 = 0.5 two hours later
    pop.learn_one("a", 1.0, HOUR_MS)  # worth 0.5
    pop.learn_one("b", 0.8, 2 * HOUR_MS)  # worth 0.8
    assert pop.score("a", 2 * HOUR_MS) == pytest.approx(1.0)
    assert pop.score("b", 2 * HOUR_MS) == pytest.approx(0.8)
    assert [item for item, _ in pop.top(2, 2 * HOUR_MS)] == ["a", "b"]
    # One hour later everything halves; the order does not change.
    assert pop.score("a", 3 * HOUR_MS) == pytest.approx(0.5)


def test_decayed_popularity_survives_rescale():
    pop = DecayedPopularity(half_life_s=3600.0)
    for h in range(100):  # 100 half-lives: forces several epoch rescales
        pop.learn_one("a", 1.0, h * HOUR_MS)
    # Geometric series 1 + 1/2 + 1/4 + ... -> 2.
    assert pop.score("a", 99 * HOUR_MS) == pytest.approx(2.0)


def test_undecayed_popularity_counts():
    pop = DecayedPopularity(half_life_s=math.inf)
    for t in (0, 10 * HOUR_MS, 1000 * HOUR_MS):
        pop.learn_one("x", 1.0, t)
    assert pop.score("x", 0) == 3.0


def test_trending_prefers_a_surge_over_a_steady_item():
    t = Trending(short_half_life_s=3600.0, long_half_life_s=86_400.0, prior=1.0)
    for h in range(48):
        t.learn_one("steady", 1.0, h * HOUR_MS)
    for _ in range(5):
        t.learn_one("surge", 1.0, 47 * HOUR_MS)
    scores = dict(t.top(2, 47 * HOUR_MS))
    assert scores["surge"] > scores["steady"] > 1.0


def test_pair_weights_window_distinct_and_damped():
    recent = [("a", 1.0), ("b", 2.0), ("a", 3.0), ("c", 1.0)]
    # Newest first: c (1*2), a (3*2*0.5; the older "a" is skipped), b stops the window of 2.
    assert pair_weights(recent, "d", 2.0, window=2, distance_decay=0.5) == [
        ("c", 2.0),
        ("a", 3.0),
    ]
    assert pair_weights([("d", 1.0)], "d", 1.0) == []  # never pairs with itself


def test_item_similarity_cosine_by_hand():
    # Users: u1 views a, b; u2 views a, b, c; u3 views c.  Binary vectors (weight 1):
    # a=(1,1,0) b=(1,1,0) c=(0,1,1): cos(a,b)=1, cos(a,c)=1/2, cos(b,c)=1/2.
    sim = ItemSimilarity(max_neighbors=10)
    histories = {"u1": ["a", "b"], "u2": ["a", "b", "c"], "u3": ["c"]}
    for items in histories.values():
        recent: list[tuple[str, float]] = []
        for item in items:
            sim.apply(pair_deltas(recent, item, 1.0, 0))
            recent.append((item, 1.0))
    assert sim.similarity("a", "b") == pytest.approx(1.0)
    assert sim.similarity("a", "c") == pytest.approx(0.5)
    assert sim.similarity("c", "b") == pytest.approx(0.5)
    assert [i for i, _ in sim.neighbors("a", 2)] == ["b", "c"]
    # The vectorised scorer agrees: user with recent [a] weight 2 scores b=2, c=1.
    idx = np.array([sim.vocab.get("a")])
    scores = sim.scores(idx, np.array([2.0]), len(sim.vocab))
    assert scores[sim.vocab.get("b")] == pytest.approx(2.0)
    assert scores[sim.vocab.get("c")] == pytest.approx(1.0)


def test_item_similarity_event_weights_and_decay():
    # Weighted: a (w=2) then b (w=3) by one user: C=6, N(a)=4, N(b)=9 -> cos 1.
    sim = ItemSimilarity(max_neighbors=4, half_life_s=3600.0)
    sim.apply(pair_deltas([], "a", 2.0, 0))
    sim.apply(pair_deltas([("a", 2.0)], "b", 3.0, 0))
    assert sim.similarity("a", "b") == pytest.approx(1.0)
    # An hour later a second user views only a (w=1): its old contributions are halved relative
    # to the new one: C=6/2=3, N(a)=4/2+1=3, N(b)=9/2 -> 3/sqrt(3*4.5).
    sim.apply(pair_deltas([], "a", 1.0, HOUR_MS))
    assert sim.similarity("a", "b") == pytest.approx(3 / math.sqrt(3 * 4.5))


def test_capped_rows_space_saving():
    rows = CappedRows(capacity=2)
    rows.add(0, 1, 5.0)
    rows.add(0, 2, 1.0)
    rows.add(0, 3, 2.0)  # evicts 2 (count 1), inherits 1 as error: upper 3, lower 2
    assert rows.get(0, 2) == 0.0
    assert (rows.get(0, 3), rows.upper(0, 3)) == (2.0, 3.0)
    rows.add(0, 3, 1.0)
    assert rows.get(0, 3) == 3.0
    assert rows.get(0, 1) == 5.0  # the heavy pair is never evicted


def test_memory_is_bounded_by_configuration_not_stream_length():
    rng = np.random.default_rng(0)
    n_items, cap = 300, 8
    sim = ItemSimilarity(max_neighbors=cap)
    trans = Transitions(max_successors=cap)
    sizes = []
    for _chunk in range(4):
        for _ in range(5_000):
            items = rng.integers(0, n_items, size=6)
            for a, b in itertools.pairwise(items):
                sim.apply_indices(int(a), int(b), 1.0, 0)
                trans.learn_one(int(a), int(b), 1.0, 0)
        sizes.append((sim.n_pairs, sim.rows.nbytes(), trans.rows.n_entries))
        assert sim.n_pairs <= n_items * cap
        assert trans.rows.n_entries <= n_items * cap
        assert int(sim.rows.lengths().max()) <= cap
    # After the rows fill up, 3x more stream adds nothing.
    assert sizes[-1] == sizes[1]
    assert sim.rows.evictions > 0


def test_heavy_pair_survives_eviction_pressure():
    sim = ItemSimilarity(max_neighbors=4)
    rng = np.random.default_rng(1)
    for step in range(2_000):
        if step % 5 < 2:
            # 40% of item 0's pairs: above Space-Saving's 1/capacity = 25% guarantee.
            sim.apply_indices(0, 1, 1.0, 0)
        else:
            sim.apply_indices(0, int(rng.integers(2, 1_000)), 1.0, 0)
    assert sim.rows.get(0, 1) > 0
    assert int(np.argmax(sim.rows.row(0)[1])) == sim.rows.slots[0][1]


def test_transition_probabilities_by_hand():
    t = Transitions(max_successors=3)
    for prev, nxt in ((0, 1), (0, 1), (0, 2), (1, 2)):
        t.learn_one(prev, nxt, 1.0, 0)
    assert t.probabilities(0, 3).tolist() == pytest.approx([0.0, 2 / 3, 1 / 3])
    assert t.probabilities(1, 3).tolist() == [0.0, 0.0, 1.0]
    assert t.probabilities(2, 3).tolist() == [0.0, 0.0, 0.0]


def test_top_k_excludes_and_breaks_ties_by_popularity():
    scores = np.array([1.0, 1.0, 1.0, 0.5, 0.0])
    popularity = np.array([1.0, 3.0, 2.0, 9.0, 9.0])
    assert top_k(scores, 3, np.array([1]), popularity).tolist() == [2, 0, 3]
    assert top_k(np.zeros(3), 2, None, np.array([1.0, 5.0, 3.0])).tolist() == [1, 2]
    assert top_k(np.ones(2), 5, np.array([0, 1])).tolist() == []
