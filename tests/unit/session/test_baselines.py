"""Baselines and the evaluator: hand-computed scores and the conservative tie rule."""

from __future__ import annotations

import numpy as np

from models.session.baselines import ItemKNN, Markov, Popularity, SessionPopularity
from models.session.data import EvalCase, Vocabulary
from models.session.evaluation import case_ranks, evaluate

VOCAB = Vocabulary(["a", "b", "c", "d"])  # indices 2..5
TRAIN = [VOCAB.encode(s) for s in ("ab", "ab", "abc", "cd", "d")]


class Constant:
    """Scores every item the same: must not gain anything from ties."""

    def score(self, prefixes):
        return np.zeros((len(prefixes), VOCAB.size), dtype=np.float32)


def test_constant_scorer_ranks_every_target_last() -> None:
    ranks = case_ranks(Constant(), [EvalCase(("a",), "b"), EvalCase(("a",), "d")], VOCAB)
    assert ranks == [4, 4]  # 4 real items, ties against the target: last place
    assert evaluate(Constant(), [EvalCase(("a",), "b")], VOCAB)["recall@20"] == 1.0  # 4 <= 20
    assert evaluate(Constant(), [EvalCase(("a",), "b")], VOCAB, cutoffs=(3,))["recall@3"] == 0.0


def test_oov_and_excluded_targets_are_misses() -> None:
    mc = Markov(VOCAB.size).fit(TRAIN)
    ranks = case_ranks(mc, [EvalCase(("a",), "zzz"), EvalCase(("a",), "b", exclude=("b",))], VOCAB)
    assert ranks == [None, None]


def test_exclusion_moves_the_target_up() -> None:
    pop = Popularity(VOCAB.size).fit(TRAIN)  # counts a=3, b=3, c=2, d=2
    assert case_ranks(pop, [EvalCase((), "c")], VOCAB) == [4]  # ties with d count against c
    assert case_ranks(pop, [EvalCase((), "c", exclude=("a", "b"))], VOCAB) == [2]


def test_markov_uses_only_the_last_item() -> None:
    mc = Markov(VOCAB.size).fit(TRAIN)
    scores = mc.score([VOCAB.encode("ca"), VOCAB.encode("a")])
    assert np.array_equal(scores[0], scores[1])
    assert scores[0].argmax() == VOCAB.index("b")
    assert np.isneginf(scores[0][:2]).all()


def test_item_knn_sums_similarities_over_the_prefix() -> None:
    knn = ItemKNN(VOCAB.size).fit(TRAIN)
    # b co-occurs with a (3 sequences) and c (1); d co-occurs with c only
    top_after_c = knn.score([VOCAB.encode("c")])[0]
    assert top_after_c[VOCAB.index("d")] > top_after_c[VOCAB.index("b")] > 0
    both = knn.score([VOCAB.encode("ac")])[0]
    assert both[VOCAB.index("b")] > top_after_c[VOCAB.index("b")]


def test_session_popularity_prefers_items_in_the_session() -> None:
    spop = SessionPopularity(VOCAB.size).fit(TRAIN)
    order = np.argsort(-spop.score([VOCAB.encode(["d", "d", "c"])])[0])
    assert [VOCAB.item(int(i)) for i in order[:2]] == ["d", "c"]
