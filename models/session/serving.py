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
from models.session.data import FIRST_ITEM_INDEX, EvalCase, Vocabulary, left_pad
from models.session.network import OutputHead

#: Rows per forward pass; bounds the score matrix (rows x vocabulary) held in memory at once.
CHUNK_ROWS = 4096
#: Smallest row bucket of the XLA-compiled path (buckets are powers of two up to CHUNK_ROWS).
MIN_BUCKET = 16


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
        jit_compile: bool = True,
    ) -> None:
        head = OutputHead(encoder)
        if head.vocab_size != vocabulary.size:
            raise ValueError(
                f"model has {head.vocab_size} item rows, vocabulary has {vocabulary.size}"
            )
        self.encoder = encoder
        self.head = head
        self.vocabulary = vocabulary
        self.manifest: dict[str, Any] = dict(manifest or {})
        #: the version's shipped test cases and what it reached on them (set by the loader;
        #: the gate scores the serving version on a candidate's cases)
        self.holdout_cases: list[EvalCase] = []
        self.holdout_metrics: dict[str, float] = {}
        self.max_len = max_len
        self.jit_compile = jit_compile
        self._vectors_fn: Any = None
        self._scores_fn: Any = None
        self._topk_fn: Any = None
        self._item_names = np.array([], dtype=object)

    # -- compiled paths ---------------------------------------------------------------------
    def _build(self) -> None:
        tf = tensorflow()
        head = self.head
        dim = int(head.vectors.output.shape[-1])
        special = tf.constant(
            [-np.inf] * FIRST_ITEM_INDEX + [0.0] * (self.vocabulary.size - FIRST_ITEM_INDEX),
            dtype=tf.float32,
        )

        # The recurrent part is the expensive one (a loop over time steps): XLA fuses each step,
        # about halving its cost on CPU. XLA compiles once per input shape, so inputs are padded
        # to max_len steps and to a power-of-two number of rows (see ``_bucket``).
        @tf.function(
            input_signature=[tf.TensorSpec([None, None], tf.int32)], jit_compile=self.jit_compile
        )
        def vectors_fn(x: Any) -> Any:
            return head.vectors(x, training=False)[:, -1, :]

        @tf.function(input_signature=[tf.TensorSpec([None, dim], tf.float32)])
        def scores_fn(vectors: Any) -> Any:
            return head.logits(vectors) + special

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, dim], tf.float32),
                tf.TensorSpec([None, 2], tf.int32),
                tf.TensorSpec([], tf.int32),
            ]
        )
        def topk_fn(vectors: Any, excluded: Any, k: Any) -> Any:
            scores = head.logits(vectors) + special
            n = tf.shape(excluded)[0]
            scores = tf.tensor_scatter_nd_update(
                scores, excluded, tf.fill([n], tf.constant(-np.inf, tf.float32))
            )
            return tf.math.top_k(scores, k=k)

        self._vectors_fn, self._scores_fn, self._topk_fn = vectors_fn, scores_fn, topk_fn
        self._item_names = np.array(self.vocabulary.items, dtype=object)

    def _bucket(self, rows: int) -> int:
        if not self.jit_compile:
            return rows
        size = MIN_BUCKET
        while size < rows:
            size *= 2
        return size

    def _vectors(self, encoded: Sequence[np.ndarray]) -> Any:
        """Session vectors of encoded prefixes (at most ``CHUNK_ROWS``), one compiled call."""
        if self._vectors_fn is None:
            self._build()
        width = self.max_len if self.jit_compile else max((len(p) for p in encoded), default=1)
        x = left_pad([p[-self.max_len :] for p in encoded], length=min(max(width, 1), self.max_len))
        rows = self._bucket(len(encoded))
        if rows > x.shape[0]:
            x = np.concatenate([x, np.zeros((rows - x.shape[0], x.shape[1]), dtype=x.dtype)])
        return self._vectors_fn(x)[: len(encoded)]

    def warmup(self, max_rows: int = 1024) -> None:
        """Compile every row bucket up to ``max_rows`` now (seconds), not on the first requests."""
        size = MIN_BUCKET
        while True:
            self._vectors([np.array([FIRST_ITEM_INDEX], dtype=np.int32)] * size)
            if size >= min(max_rows, CHUNK_ROWS):
                break
            size *= 2

    # -- evaluator interface ----------------------------------------------------------------
    def score(self, prefixes: Sequence[np.ndarray]) -> np.ndarray:
        """Scores over the vocabulary for encoded prefixes; padding/OOV columns are ``-inf``."""
        out = []
        for start in range(0, len(prefixes), CHUNK_ROWS):
            vectors = self._vectors(prefixes[start : start + CHUNK_ROWS])
            out.append(self._scores_fn(vectors).numpy())
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
            vectors = self._vectors(encoded)
            values, indices = self._topk_fn(vectors, excluded, np.int32(k_eff))
            names = self._item_names[indices.numpy() - FIRST_ITEM_INDEX].tolist()
            scores = values.numpy().tolist()
            for row, prefix in enumerate(chunk):
                if len(prefix) == 0:
                    results.append([])
                    continue
                results.append(
                    [
                        (name, score)
                        for name, score in zip(names[row], scores[row], strict=True)
                        if score != -np.inf
                    ]
                )
        return results

    @property
    def version(self) -> str | None:
        return self.manifest.get("version")
