"""The session blend holds where a single model would not: on planted streams it is never below
its best part, it recommends items of the session again, and the GRU's schedule scales."""

from __future__ import annotations

import numpy as np
import pytest

from models.datasets.ecommerce import EcommerceConfig, generate_ecommerce
from models.datasets.synthetic import SyntheticConfig, generate_synthetic
from models.session.baselines import Markov, SessionPopularity
from models.session.blend import SessionBlend, grid
from models.session.data import EvalCase, Vocabulary, session_protocol
from models.session.experiment import run_experiment

PARTS = ("session_pop", "session_knn", "item_knn", "markov")


@pytest.mark.parametrize(
    "events",
    [
        generate_ecommerce(EcommerceConfig().resized(8000)).events,  # repeats: S-POP, SKNN
        generate_synthetic(  # a planted chain: Markov and item-kNN
            SyntheticConfig(n_users=150, n_items=200, n_clusters=8, n_events=8000, seed=3)
        ).events,
    ],
    ids=["ecommerce", "synthetic"],
)
def test_the_blend_is_never_below_its_best_part(events) -> None:
    exp = run_experiment(events, "planted", "session", train_gru_model=False)
    blend = exp.extra["session_blend"]
    for metric in ("recall@20", "mrr@20"):
        best = max({**exp.models, **exp.extra}[p][metric] for p in PARTS)
        assert blend[metric] >= best * 0.99, (metric, blend, exp.blend.weights)
    assert sum(exp.blend.weights.values()) == pytest.approx(1.0)


def test_the_grid_holds_every_part_alone() -> None:
    weights = grid(4)
    assert len(weights) == 35
    for part in range(4):
        assert tuple(1.0 if p == part else 0.0 for p in range(4)) in weights


def test_items_of_the_session_come_back_unless_excluded() -> None:
    vocab = Vocabulary(["a", "b", "c", "d"])
    seqs = [vocab.encode(s) for s in ("abab", "cdcd", "acac", "bdbd")]
    parts = {"session_pop": SessionPopularity(vocab.size).fit(seqs)}
    parts["markov"] = Markov(vocab.size).fit(seqs)
    blend = SessionBlend.fit(parts, vocab, [EvalCase(("c", "d", "c"), "c")])
    assert blend.recommend([["c", "d", "c"]], 1)[0][0][0] == "c"
    top = blend.recommend([["c", "d", "c"]], 4, exclude=[["c"]])[0]
    assert "c" not in [item for item, _ in top] and len(top) == 3
    assert blend.recommend([[]], 3) == [[]]


def test_the_gru_trains_at_least_min_updates_however_small_the_data() -> None:
    from models.session.trainer import GRUConfig, train_gru

    data = generate_ecommerce(EcommerceConfig().resized(1500))
    split = session_protocol(data.events)
    vocab = Vocabulary.build(s.items for s in split.train)
    seqs = [vocab.encode(s.items) for s in split.train]
    tiny = GRUConfig(embedding_dim=8, hidden_units=8, negatives=16, epochs=1, patience=1)
    once = train_gru(seqs, vocab, split.validation[:50], tiny.__class__(**{
        **tiny.to_json_dict(), "min_updates": 0}), progress=False)  # fmt: skip
    scaled = train_gru(
        seqs, vocab, split.validation[:50], GRUConfig(**{**tiny.to_json_dict(),
        "min_updates": 4 * once.updates}), progress=False)  # fmt: skip
    assert once.updates == int(np.ceil(len(seqs) / 64)) or once.updates > 0
    assert scaled.updates >= 4 * once.updates
    assert len(scaled.history) >= 4
