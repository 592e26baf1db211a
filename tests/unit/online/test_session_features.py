"""The planted-truth oracle on a tiny world, and the recommender's session-aware features."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from models.datasets import SyntheticConfig, generate_synthetic
from models.evaluation.prequential import prequential
from models.events import Interaction
from models.online.baselines import MarkovBaseline
from models.online.oracle import PlantedOracle
from models.online.recommender import FEATURES, OnlineRecommender

T0 = 1_700_000_000_000
HOUR_MS = 3_600_000


def _world() -> SimpleNamespace:
    # Cluster 0: a, b, c (chain a -> c -> b -> a); cluster 1: x, y (chain x -> y -> x). The
    # fields of models.datasets.synthetic.SyntheticWorld, without a chain that resumes.
    return SimpleNamespace(
        item_cluster={"a": 0, "b": 0, "c": 0, "x": 1, "y": 1},
        successor={"a": "c", "c": "b", "b": "a", "x": "y", "y": "x"},
        user_taste={"u": np.array([0.25, 0.75]), "w": np.array([1.0, 0.0])},
        item_popularity={"a": 0.5, "b": 0.3, "c": 0.2, "x": 0.9, "y": 0.1},
    )


def _learn(model, user: str, items: list[str], start_ms: int) -> None:
    for n, item in enumerate(items):
        model.learn_one(Interaction(user, item, "view", start_ms + n * 1_000))


def test_oracle_scores_are_the_generator_probabilities():
    oracle = PlantedOracle(_world(), follow_chain_p=0.6, noise_p=0.05)
    _learn(oracle, "w", ["a", "b", "c", "x", "y"], T0)
    _learn(oracle, "u", ["b"], T0 + 10_000)
    n = len(oracle.vocab)
    index = {item: oracle.vocab.get(item) for item in "abcxy"}
    # In session after b (cluster 0): 0.6 on the successor a, 0.35 x weight inside cluster 0,
    # 0.05 / 5 everywhere.
    inside = oracle._scores("u", n, T0 + 20_000)
    assert inside[index["a"]] == pytest.approx(0.6 + 0.35 * 0.5 + 0.01)
    assert inside[index["c"]] == pytest.approx(0.35 * 0.2 + 0.01)
    assert inside[index["x"]] == pytest.approx(0.01)
    assert oracle.rank("u", 3, T0 + 20_000) == ["a", "c", "x"]  # b is the user's own
    # Two hours later, a new session: taste x in-cluster weight.
    first = oracle._scores("u", n, T0 + 2 * HOUR_MS)
    assert first[index["x"]] == pytest.approx(0.75 * 0.9)
    assert first[index["a"]] == pytest.approx(0.25 * 0.5)
    assert oracle.rank("u", 2, T0 + 2 * HOUR_MS) == ["x", "a"]


class _ResumingWorld:
    """The tiny world with a chain that resumes after a detour (as ``SyntheticWorld`` can)."""

    def __init__(self) -> None:
        base = _world()
        self.item_cluster, self.successor = base.item_cluster, base.successor
        self.user_taste, self.item_popularity = base.user_taste, base.item_popularity

    def chain_position(self, session_items: list[str]) -> str:
        position = session_items[0]
        for item in session_items[1:]:
            if item == self.successor[position]:
                position = item
        return position


def test_oracle_session_cluster_is_the_first_items():
    oracle = PlantedOracle(_ResumingWorld())
    _learn(oracle, "w", ["a", "b", "c", "x", "y"], T0)
    # u's session starts in cluster 1 (y) and takes a noise detour to c (cluster 0): the draw
    # stays in cluster 1, and the chain resumes at y, so its successor x comes first.
    _learn(oracle, "u", ["y", "c"], T0 + 10_000)
    n = len(oracle.vocab)
    scores = oracle._scores("u", n, T0 + 20_000)
    assert scores[oracle.vocab.get("x")] == pytest.approx(0.6 + 0.35 * 0.9 + 0.01)
    assert scores[oracle.vocab.get("b")] == pytest.approx(0.01)  # c's successor: not the chain
    assert oracle.rank("u", 1, T0 + 20_000) == ["x"]


def test_oracle_is_a_ceiling_on_a_small_planted_stream():
    ds = generate_synthetic(
        SyntheticConfig(n_users=60, n_items=80, n_clusters=4, n_events=3_000, seed=3)
    )
    out = prequential(ds.events, {"oracle": PlantedOracle(ds.planted), "markov": MarkovBaseline()})
    oracle, markov = out["models"]["oracle"], out["models"]["markov"]
    assert oracle["hit_rate@10"] > markov["hit_rate@10"]
    assert oracle["mrr@10"] > markov["mrr@10"]


def test_new_session_detection_uses_the_request_time():
    rec = OnlineRecommender(session_gap_s=60.0)
    assert rec.is_new_session("nobody", T0)
    rec.learn_one(Interaction("u", "a", "view", T0))
    assert not rec.is_new_session("u", T0 + 30_000)
    assert rec.is_new_session("u", T0 + 61_000)
    assert not rec.is_new_session("u", None)  # no request time: continue the session


def test_session_and_taste_popularity_by_hand():
    catalog = {
        "a": {"category": "c0"},
        "b": {"category": "c0"},
        "c": {"category": "c0"},
        "x": {"category": "c1"},
    }
    rec = OnlineRecommender(
        catalog=catalog,
        reranker=None,
        popularity_half_life_s=float("inf"),
        session_popularity=True,
    )
    # Popularity (event weight 1 per view): a 3, b 1, c 1, x 4 (then b 2, x 5 with u).
    for n, (user, item) in enumerate(
        [("p", "a"), ("q", "a"), ("r", "a"), ("p", "b"), ("q", "c")]
        + [(f"v{k}", "x") for k in range(4)]
    ):
        rec.learn_one(Interaction(user, item, "view", T0 + n * 1_000))
    # u: an old session on x, then (3 h later) a session on b.
    rec.learn_one(Interaction("u", "x", "view", T0 + 20_000))
    rec.learn_one(Interaction("u", "b", "view", T0 + 3 * HOUR_MS))
    col = {item: rec.vocab.get(item) for item in "abcx"}
    session_pop, taste_pop = FEATURES.index("session_pop"), FEATURES.index("taste_pop")
    markov_new = FEATURES.index("markov_new")

    inside = rec._features("u", T0 + 3 * HOUR_MS + 10_000)
    # The session is {b} (category c0): popularity of c0 items, scaled to max 1; x scores 0.
    assert inside[session_pop, col["a"]] == pytest.approx(1.0)
    assert inside[session_pop, col["c"]] == pytest.approx(1 / 3)
    assert inside[session_pop, col["x"]] == 0.0
    assert not inside[taste_pop].any() and not inside[markov_new].any()

    later = rec._features("u", T0 + 6 * HOUR_MS)
    # A new session: the whole history {x, b} is half c0, half c1 (cosine 1/sqrt 2 each), times
    # popularity 3 (a), 1 (c), 5 (x), scaled to max 1.
    assert later[taste_pop, col["x"]] == pytest.approx(1.0)
    assert later[taste_pop, col["a"]] == pytest.approx(3 / 5)
    assert not later[session_pop].any()
    assert later[markov_new, col["b"]] == 0.0  # b -> ? was never followed: no transition mass


def test_skip_transitions_from_earlier_session_items_by_hand():
    rec = OnlineRecommender(reranker=None, content=False, skip_steps=3, skip_decay=0.5)
    pairs = [("p", "a"), ("p", "b"), ("q", "a"), ("q", "b"), ("r", "a"), ("r", "c")]
    for n, (user, item) in enumerate(pairs):
        rec.learn_one(Interaction(user, item, "view", T0 + n * 1_000))
    for n, item in enumerate(["x", "a", "d"]):  # one session of u: x -> a -> d
        rec.learn_one(Interaction("u", item, "view", T0 + 10_000 + n * 1_000))
    # Transitions: a -> b 2, a -> c 1, a -> d 1 (total 4); x -> a 1. Earlier session items of u,
    # newest first: a (weight 1), x (weight 0.5). The path position: x, then a (x's top
    # successor), then d is a detour (a's top successor is b), so the position a is not the last
    # item and its transitions are added once more.
    skip = FEATURES.index("markov_skip")
    col = {item: rec.vocab.get(item) for item in "abcdx"}
    inside = rec._features("u", T0 + 20_000)
    assert inside[skip, col["b"]] == pytest.approx(2 * 0.5)
    assert inside[skip, col["c"]] == pytest.approx(2 * 0.25)
    assert inside[skip, col["d"]] == pytest.approx(2 * 0.25)
    assert inside[skip, col["a"]] == pytest.approx(0.5 * 1.0)
    assert inside[skip, col["x"]] == 0.0
    assert not rec._features("u", T0 + 6 * HOUR_MS)[skip].any()  # a new session: no skips


def test_skip_transitions_without_a_detour():
    rec = OnlineRecommender(reranker=None, content=False)
    for n, (user, item) in enumerate([("p", "x"), ("p", "a"), ("p", "b"), ("u", "x")]):
        rec.learn_one(Interaction(user, item, "view", T0 + n * 1_000))
    rec.learn_one(Interaction("u", "a", "view", T0 + 5_000))
    # u: x -> a, on the learned path (position a = the last item): only the skip from x counts.
    skip = FEATURES.index("markov_skip")
    row = rec._features("u", T0 + 6_000)[skip]
    assert row[rec.vocab.get("a")] == pytest.approx(1.0)  # x -> a twice, nothing else
    assert row.sum() == pytest.approx(1.0)
