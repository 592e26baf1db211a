"""The GRU4Rec-style network: item embedding -> GRU -> projection back into the embedding space.

The Keras model is only the *encoder*: prefixes in, one session vector per position out. Scores
are ``session_vector . item_embedding`` with the *same* embedding table the input uses (tied, the
"constrained embedding" of GRU4Rec), so the output layer costs nothing extra and the model file
holds only standard Keras layers, which is what lets the loader use Keras' safe mode with no
custom objects at all.
"""

from __future__ import annotations

from typing import Any

from models.session._tf import keras

EMBEDDING_LAYER = "item_embedding"


def build_encoder(
    vocab_size: int,
    embedding_dim: int = 64,
    hidden_units: int = 100,
    n_layers: int = 1,
    dropout_embedding: float = 0.0,
    dropout_hidden: float = 0.2,
) -> Any:
    """A functional Keras model ``int32[batch, time] -> float32[batch, time, embedding_dim]``.

    Index 0 is padding: ``mask_zero`` makes the GRU carry its state across padded steps, so left
    padding leaves the last output equal to the state after the last real item.
    """
    k = keras()
    items = k.Input(shape=(None,), dtype="int32", name="items")
    x = k.layers.Embedding(
        vocab_size,
        embedding_dim,
        mask_zero=True,
        embeddings_initializer=k.initializers.RandomNormal(stddev=0.05),
        name=EMBEDDING_LAYER,
    )(items)
    if dropout_embedding > 0:
        x = k.layers.Dropout(dropout_embedding, name="dropout_embedding")(x)
    for n in range(n_layers):
        x = k.layers.GRU(hidden_units, return_sequences=True, name=f"gru_{n}")(x)
    if dropout_hidden > 0:
        x = k.layers.Dropout(dropout_hidden, name="dropout_hidden")(x)
    out = k.layers.Dense(embedding_dim, name="projection")(x)
    return k.Model(items, out, name="gru4rec_encoder")


def item_embeddings(encoder: Any) -> Any:
    """The tied item table (a variable of shape ``[vocab_size, embedding_dim]``)."""
    return encoder.get_layer(EMBEDDING_LAYER).embeddings
