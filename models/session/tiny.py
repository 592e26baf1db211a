"""A tiny, honestly saved session-model version: what the integration tests and ``make chaos``
offer a running worker when they need one that passes its gate (or, with an attacking layer,
one that must be refused), without training anything.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

#: Its items, ``i0``-``i11`` (with 4-wide layers it loads in well under a second).
ITEMS = [f"i{j}" for j in range(12)]
#: The seed of every version's weights (the same network each time).
SEED = 11


def save_tiny_version(store: Path, hour: int, layer: Any = None) -> Path:
    """An untrained version over :data:`ITEMS` saved in ``store`` and dated ``hour`` on a fixed
    day (the directory's name is its version), whose every manifest claim holds on its held-out
    cases, so the worker's gate passes it; ``layer``, a Keras layer, goes between its embedding
    and its GRU (a Lambda or a custom layer: code the worker must refuse to run). Every version
    has the same seeded weights, so a newer one scores as the serving one on any cases and the
    gate's head-to-head passes it too (unseeded, one tiny version lost to another by chance)."""
    import keras

    from models.session.artifacts import save_artifact
    from models.session.data import EvalCase, Vocabulary
    from models.session.network import EMBEDDING_LAYER, PROJECTION_LAYER
    from models.session.serving import SessionModel

    vocab = Vocabulary(ITEMS)
    items = keras.Input(shape=(None,), dtype="int32")
    normal = keras.initializers.RandomNormal(stddev=0.05, seed=SEED)
    embedded = keras.layers.Embedding(
        vocab.size, 4, embeddings_initializer=normal, name=EMBEDDING_LAYER
    )(items)
    x = keras.layers.GRU(
        4,
        return_sequences=True,
        kernel_initializer=keras.initializers.GlorotUniform(seed=SEED + 1),
        recurrent_initializer=keras.initializers.Orthogonal(seed=SEED + 2),
    )(layer(embedded) if layer is not None else embedded)
    projection = keras.layers.Dense(
        4, kernel_initializer=keras.initializers.GlorotUniform(seed=SEED + 3), name=PROJECTION_LAYER
    )
    encoder = keras.Model(items, projection(x))
    metrics = {
        "test": {"recall@20": 0.30, "mrr@20": 0.05},  # 12 items: recall@20 is 1.0 on any case
        "baselines": {"pop": {"recall@20": 0.10, "mrr@20": 0.01}},
    }
    cases = [EvalCase((f"i{j}", f"i{j + 1}"), f"i{j + 2}") for j in range(8)]
    when = dt.datetime(2026, 11, 23, hour, tzinfo=dt.UTC)
    model = SessionModel(encoder, vocab)
    return save_artifact(model, store, {"metrics": metrics}, ["i1"], now=when, holdout=cases)
