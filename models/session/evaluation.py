"""Next-item evaluation of any prefix scorer, with the shared rank rules of ``models.evaluation``.

Rules: full ranking over the whole vocabulary (no sampled negatives); ties count against the
target (``rank_in_scores``); padding and OOV columns are never ranked; an OOV target, or a target
in the case's ``exclude`` list, is a miss; every case counts once (every position of every test
session in the session protocol, one case per user in leave-one-out).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.evaluation.metrics import RankAccumulator, rank_in_scores
from models.session.baselines import PrefixScorer
from models.session.data import FIRST_ITEM_INDEX, EvalCase, Vocabulary

CUTOFFS: tuple[int, ...] = (10, 20)
REPORTED = ("recall@10", "recall@20", "mrr@10", "mrr@20", "ndcg@10", "ndcg@20")


def case_ranks(
    scorer: PrefixScorer, cases: Sequence[EvalCase], vocab: Vocabulary, batch_size: int = 1000
) -> list[int | None]:
    """Conservative 1-based rank of each case's target (None = miss), in case order."""
    ranks: list[int | None] = []
    special = np.arange(FIRST_ITEM_INDEX)
    for start in range(0, len(cases), batch_size):
        batch = cases[start : start + batch_size]
        scores = scorer.score([vocab.encode(c.prefix) for c in batch])
        for row, case in enumerate(batch):
            target = vocab.index(case.target)
            if target < FIRST_ITEM_INDEX:
                ranks.append(None)
                continue
            excluded = np.concatenate([special, vocab.encode(case.exclude)]).astype(np.int64)
            ranks.append(rank_in_scores(scores[row], target, excluded))
    return ranks


def evaluate(
    scorer: PrefixScorer,
    cases: Sequence[EvalCase],
    vocab: Vocabulary,
    cutoffs: tuple[int, ...] = CUTOFFS,
    batch_size: int = 1000,
) -> dict[str, float]:
    """Recall/MRR/NDCG at the cut-offs plus ``cases`` (how many were ranked).

    >>> from models.session.baselines import Markov
    >>> vocab = Vocabulary(["a", "b", "c"])
    >>> mc = Markov(vocab.size).fit([vocab.encode("ab"), vocab.encode("ab"), vocab.encode("ac")])
    >>> out = evaluate(mc, [EvalCase(("a",), "b"), EvalCase(("a",), "c")], vocab, cutoffs=(1,))
    >>> out["recall@1"], out["mrr@1"], out["cases"]
    (0.5, 0.5, 2.0)
    """
    acc = RankAccumulator(cutoffs=cutoffs)
    for rank in case_ranks(scorer, cases, vocab, batch_size):
        acc.add(rank)
    summary = {k: v for k, v in acc.summary().items() if not k.startswith("hit_rate")}
    summary["cases"] = float(acc.count)
    return summary
