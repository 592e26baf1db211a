"""The GRU4Rec-style network: item embedding -> GRU -> projection -> item scores.

Only standard Keras layers (Embedding, Dropout, GRU, Dense), so the loader can use Keras' safe
mode with no custom objects at all. Two output heads, as in GRU4Rec: tied (an item's score is the
session vector against its input embedding) or untied (a ``Dense(vocab_size)``, ``item_scores``,
with an output vector and a bias per item). Training never computes the full ``Dense`` output:
:class:`OutputHead` gathers only the candidate columns (sampled softmax), so a step's cost does
not grow with the catalogue. When each head fits: docs/session-model.md, "Design choices, and why".
"""

from __future__ import annotations

from typing import Any

from models.session._tf import keras, tensorflow

EMBEDDING_LAYER = "item_embedding"
PROJECTION_LAYER = "projection"
SCORES_LAYER = "item_scores"


def build_encoder(
    vocab_size: int,
    embedding_dim: int = 64,
    hidden_units: int = 100,
    n_layers: int = 1,
    dropout_embedding: float = 0.0,
    dropout_hidden: float = 0.2,
    tied: bool = True,
    item_skip: bool = False,
) -> Any:
    """A functional Keras model over ``int32[batch, time]`` item indices (0 = padding).

    Outputs ``[batch, time, embedding_dim]`` session vectors (tied) or ``[batch, time, vocab]``
    scores (untied). ``item_skip`` feeds the current item's embedding past the GRU into the
    projection, so "what usually follows this item" need not be squeezed through the recurrent
    state (it helps on data with strong item-to-item successions). ``mask_zero`` makes the GRU
    carry its state across padded steps, so with left padding the last output is the state after
    the last real item.
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
    embedded = x  # the skip path sees the item as is: the GRU input gets the dropout
    if dropout_embedding > 0:
        x = k.layers.Dropout(dropout_embedding, name="dropout_embedding")(x)
    for n in range(n_layers):
        x = k.layers.GRU(hidden_units, return_sequences=True, name=f"gru_{n}")(x)
    if dropout_hidden > 0:
        x = k.layers.Dropout(dropout_hidden, name="dropout_hidden")(x)
    if item_skip:
        x = k.layers.Concatenate(name="item_skip")([x, embedded])
    out = k.layers.Dense(embedding_dim, name=PROJECTION_LAYER)(x)
    if not tied:
        out = k.layers.Dense(vocab_size, name=SCORES_LAYER)(out)
    return k.Model(items, out, name="gru4rec")


def item_embeddings(model: Any) -> Any:
    """The input item table (a variable of shape ``[vocab_size, embedding_dim]``)."""
    return model.get_layer(EMBEDDING_LAYER).embeddings


class OutputHead:
    """Session vectors and item logits of a built or loaded model, tied or untied."""

    def __init__(self, model: Any) -> None:
        k = keras()
        names = {layer.name for layer in model.layers}
        self.model = model
        self._tf = tensorflow()  # resolved here: traced code must not touch os.environ
        self.tied = SCORES_LAYER not in names
        self.table = item_embeddings(model)
        self.vocab_size = int(self.table.shape[0])
        if self.tied:
            self.vectors = model
            self.kernel = self.bias = None
        else:
            scores = model.get_layer(SCORES_LAYER)
            self.kernel, self.bias = scores.kernel, scores.bias
            if int(self.kernel.shape[1]) != self.vocab_size:
                raise ValueError(
                    f"output layer scores {self.kernel.shape[1]} items, "
                    f"the embedding has {self.vocab_size}"
                )
            self.vectors = k.Model(model.inputs[0], model.get_layer(PROJECTION_LAYER).output)

    def logits(self, vectors: Any, candidates: Any = None) -> Any:
        """``vectors [n, d]`` against every item (``candidates`` None) or the candidate ids."""
        tf = self._tf
        if self.tied:
            table = self.table if candidates is None else tf.gather(self.table, candidates)
            return tf.matmul(vectors, table, transpose_b=True)
        if candidates is None:
            return tf.matmul(vectors, self.kernel) + self.bias
        kernel = tf.gather(self.kernel, candidates, axis=1)
        return tf.matmul(vectors, kernel) + tf.gather(self.bias, candidates)
