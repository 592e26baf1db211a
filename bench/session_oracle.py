"""How much room the synthetic stream leaves above first-order Markov: a planted-truth ceiling.

The synthetic generator (``models.datasets.synthetic``) walks each session along its cluster's
planted chain with probability ``follow_chain_p`` and otherwise takes a detour (a cluster-popular
item or, rarely, a uniform one) after which the walk resumes where it was. A scorer that *knows*
the planted successor map and item clusters, and ranks ``follow_chain_p`` x [successor of the
session's chain position, ``SyntheticWorld.chain_position``] + (1 - follow_chain_p - noise_p) x
[within-cluster popularity of the session's majority cluster], is close to the best any model can
do on this data. Comparing it with Markov, item-kNN and the GRU results (same split, same
evaluator) says how large a margin over Markov is possible at all.

    .venv/bin/python bench/session_oracle.py   # writes bench/results/session_synthetic_oracle.json
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from results_file import write_results

from models.datasets import load_dataset
from models.datasets.synthetic import SyntheticConfig
from models.session.baselines import ItemKNN, Markov
from models.session.data import FIRST_ITEM_INDEX, Vocabulary, session_protocol
from models.session.evaluation import evaluate


class PlantedOracle:
    """Scores from the generator's ground truth (successor map, clusters) + training popularity."""

    def __init__(self, vocab: Vocabulary, planted, sequences: Sequence[np.ndarray]) -> None:
        cfg = SyntheticConfig()
        self.follow, self.noise = cfg.follow_chain_p, cfg.noise_p
        self.size = vocab.size
        self.cluster = np.full(vocab.size, -1)
        self.successor = np.zeros(vocab.size, dtype=np.int64)
        for item in vocab.items:
            self.cluster[vocab.index(item)] = planted.item_cluster[item]
            self.successor[vocab.index(item)] = vocab.index(planted.successor[item])
        self.popularity = np.zeros(vocab.size)
        for seq in sequences:
            np.add.at(self.popularity, seq, 1.0)
        self.popularity[:FIRST_ITEM_INDEX] = 0.0
        self.planted, self.vocab = planted, vocab

    def score(self, prefixes: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(prefixes), self.size))
        for row, prefix in enumerate(prefixes):
            known = prefix[prefix >= FIRST_ITEM_INDEX]
            if known.size == 0:
                continue
            cluster = Counter(self.cluster[known].tolist()).most_common(1)[0][0]
            within = np.where(self.cluster == cluster, self.popularity, 0.0)
            within /= max(within.sum(), 1.0)
            out[row] = (1.0 - self.follow - self.noise) * within + self.noise / self.size
            position = self.planted.chain_position([self.vocab.item(i) for i in known.tolist()])
            out[row, self.successor[self.vocab.index(position)]] += self.follow
        out[:, :FIRST_ITEM_INDEX] = -np.inf
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path("bench/results/session_synthetic_oracle.json")
    )
    parser.add_argument(
        "--gru-results", type=Path, default=Path("bench/results/session_synthetic_session.json")
    )
    args = parser.parse_args()
    data = load_dataset("synthetic")
    split = session_protocol(data.events)
    vocab = Vocabulary.build(s.items for s in split.train)
    sequences = [vocab.encode(s.items) for s in split.train]
    models = {
        "planted_oracle": evaluate(
            PlantedOracle(vocab, data.planted, sequences), split.test, vocab
        ),
        "markov": evaluate(Markov(vocab.size).fit(sequences), split.test, vocab),
        "item_knn": evaluate(ItemKNN(vocab.size).fit(sequences), split.test, vocab),
    }
    if args.gru_results.is_file():
        models["gru"] = json.loads(args.gru_results.read_text())["models"]["gru"]
    results = {
        "dataset": "synthetic",
        "protocol": "session",
        "models": models,
        "room_over_markov": {
            m: round(models["planted_oracle"][m] - models["markov"][m], 4)
            for m in ("recall@20", "mrr@20", "recall@10", "mrr@10", "ndcg@10")
        },
    }
    write_results(args.out, results)
    for name, metrics in models.items():
        print(f"{name:15s} Recall@20 {metrics['recall@20']:.4f}  MRR@20 {metrics['mrr@20']:.4f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
