"""Batched inference: many sessions' prefixes in, top-K items with scores out, in one call.

Calling a Keras model eagerly costs tens of milliseconds of Python overhead per call; the scoring
paths here are ``tf.function``s with a ``[None, None]`` input signature, traced once and reused for
every batch size and prefix length. Prefixes longer than ``max_len`` keep their most recent
``max_len`` items (what the model was trained on); unknown items enter as the OOV token.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from models.session._tf import tensorflow
from models.session.data import FIRST_ITEM_INDEX, Vocabulary, left_pad
from models.session.network import item_embeddings

#: Rows per forward pass; bounds the score matrix (rows x vocabulary) held in memory at once.
CHUNK_ROWS = 4096


class SessionModel:
    """A trained encoder plus its vocabulary: the worker's view of a session-model version.

    ``recommend`` is the serving verb; ``score`` (encoded prefixes -> full score matrix) is what
    the evaluator uses, the same interface as the baselines. ``manifest`` describes the version
    (empty for a model that was never saved).
    """

    def __init__(
        self,
        encoder: Any,
        vocabulary: Vocabulary,
        manifest: dict[str, Any] | None = None,
        max_len: int = 50,
    ) -> None:
        if item_embeddings(encoder).shape[0] != vocabulary.size:
            raise ValueError(
                f"model has {item_embeddings(encoder).shape[0]} item rows, "
                f"vocabulary has {vocabulary.size}"
            )
        self.encoder = encoder
        self.vocabulary = vocabulary
        self.manifest: dict[str, Any] = dict(manifest or {})
        self.max_len = max_len
        self._scores_fn: Any = None
        self._topk_fn: Any = None

    # -- compiled paths ---------------------------------------------------------------------
    def _build(self) -> None:
        tf = tensorflow()
        encoder = self.encoder
        table = item_embeddings(encoder)
        special = tf.constant(
            [-np.inf] * FIRST_ITEM_INDEX + [0.0] * (self.vocabulary.size - FIRST_ITEM_INDEX),
            dtype=tf.float32,
        )

        def full_scores(x: Any) -> Any:
            last = encoder(x, training=False)[:, -1, :]
            return tf.matmul(last, table, transpose_b=True) + special

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)])
        def scores_fn(x: Any) -> Any:
            return full_scores(x)

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, None], tf.int32),
                tf.TensorSpec([None, 2], tf.int32),
                tf.TensorSpec([], tf.int32),
            ]
        )
        def topk_fn(x: Any, excluded: Any, k: Any) -> Any:
            scores = full_scores(x)
            n = tf.shape(excluded)[0]
            scores = tf.tensor_scatter_nd_update(
                scores, excluded, tf.fill([n], tf.constant(-np.inf, tf.float32))
            )
            return tf.math.top_k(scores, k=k)

        self._scores_fn, self._topk_fn = scores_fn, topk_fn

    def _encode(self, encoded: Sequence[np.ndarray]) -> np.ndarray:
        width = min(self.max_len, max((len(p) for p in encoded), default=1))
        return left_pad([p[-self.max_len :] for p in encoded], length=max(width, 1))

    # -- evaluator interface ----------------------------------------------------------------
    def score(self, prefixes: Sequence[np.ndarray]) -> np.ndarray:
        """Scores over the vocabulary for encoded prefixes; padding/OOV columns are ``-inf``."""
        if self._scores_fn is None:
            self._build()
        out = []
        for start in range(0, len(prefixes), CHUNK_ROWS):
            x = self._encode(prefixes[start : start + CHUNK_ROWS])
            out.append(self._scores_fn(x).numpy())
        if not out:
            return np.zeros((0, self.vocabulary.size), dtype=np.float32)
        return np.concatenate(out)

    # -- serving verb -----------------------------------------------------------------------
    def recommend(
        self,
        prefixes: Sequence[Sequence[str]],
        k: int,
        exclude: Sequence[Iterable[str]] | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Top-``k`` (item, score) per prefix, best first, in one batched call.

        ``exclude[i]`` lists items never to return for prefix ``i`` (e.g. already consumed). An
        empty prefix gets an empty list: the model has nothing to go on, and the caller's other
        sources (popularity, CF) are better placed to answer.
        """
        if k < 1:
            raise ValueError("k must be >= 1")
        if exclude is not None and len(exclude) != len(prefixes):
            raise ValueError("exclude must have one entry per prefix")
        if self._topk_fn is None:
            self._build()
        k_eff = min(k, self.vocabulary.size - FIRST_ITEM_INDEX)
        results: list[list[tuple[str, float]]] = []
        for start in range(0, len(prefixes), CHUNK_ROWS):
            chunk = prefixes[start : start + CHUNK_ROWS]
            encoded = [self.vocabulary.encode(p) for p in chunk]
            pairs: list[tuple[int, int]] = []
            if exclude is not None:
                for row, items in enumerate(exclude[start : start + CHUNK_ROWS]):
                    pairs.extend(
                        (row, idx)
                        for idx in {self.vocabulary.index(i) for i in items}
                        if idx >= FIRST_ITEM_INDEX
                    )
            excluded = np.array(pairs, dtype=np.int32).reshape(-1, 2)
            values, indices = self._topk_fn(self._encode(encoded), excluded, np.int32(k_eff))
            values, indices = values.numpy(), indices.numpy()
            for row, prefix in enumerate(chunk):
                if len(prefix) == 0:
                    results.append([])
                    continue
                results.append(
                    [
                        (self.vocabulary.item(int(i)), float(v))
                        for i, v in zip(indices[row], values[row], strict=True)
                        if np.isfinite(v)
                    ]
                )
        return results

    @property
    def version(self) -> str | None:
        return self.manifest.get("version")
