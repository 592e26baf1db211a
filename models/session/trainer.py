"""Training the GRU: padded mini-batches, sampled softmax, early stopping on validation MRR@20.

Choices, and why (the GRU4Rec authors list what third-party versions get wrong; we avoid it):

- **Padded sequences, not session-parallel mini-batches.** Keras' GRU cannot reset the hidden
  state of one row of a batch mid-sequence, which session-parallel training needs; a padded,
  masked batch gives the same thing — every position of every session predicts its next item,
  with the state reset between sessions. Batches are bucketed by length so short sessions are not
  padded to the longest one. Sessions longer than ``max_len`` are covered by overlapping windows,
  and every target is trained once with at least ``max_len/2`` items of history (no chunk starts
  from an empty state, no position is silently dropped).
- **Sampled softmax with in-batch plus popularity-sampled negatives.** The candidate set of a
  step is the union of the batch's targets (negatives for each other, already popularity-shaped)
  and ``negatives`` extra items drawn from ``popularity ** sample_alpha``, deduplicated, so an
  item never appears as its own negative. Cross-entropy over that set costs O(batch x candidates),
  independent of the catalogue size.
- **Output head**: GRU4Rec's tied ("constrained") embeddings or a separate output table with a
  per-item bias, plus an optional skip of the current item's embedding past the GRU; validation
  preferred untied + skip on both datasets (see ``network``). Dropout on the GRU output, Adam,
  fixed seeds (``keras.utils.set_random_seed`` and a seeded NumPy generator for batches and
  negatives).
- **Early stopping on validation MRR@20**, the learning rate multiplied by ``lr_decay`` after
  every epoch that did not improve it, evaluated through the same full-ranking evaluator as
  the test numbers, best weights restored; the log reports optimiser *updates*, not just epochs
  (a huge batch on small data can make "15 epochs" mean a few dozen updates).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from models.session._tf import keras, tensorflow
from models.session.data import FIRST_ITEM_INDEX, EvalCase, Vocabulary, training_windows
from models.session.evaluation import evaluate
from models.session.network import OutputHead, build_encoder
from models.session.serving import SessionModel

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GRUConfig:
    """Hyper-parameters. Defaults: what validation preferred on MovieLens-100K and the synthetic
    stream (``params`` holds the per-dataset presets; docs/session-model.md the tuning log).

    ``sample_alpha`` 0 draws the extra negatives uniformly: on these catalogues (1-2k items) the
    in-batch targets already supply popularity-shaped negatives, and uniform extras push rare
    items down too, which full-ranking evaluation rewards. For catalogues far larger than
    ``negatives``, 0.5-0.75 is the usual choice (not measured here).
    """

    embedding_dim: int = 64
    hidden_units: int = 100
    n_layers: int = 1
    tied: bool = False
    item_skip: bool = True
    dropout_embedding: float = 0.0
    dropout_hidden: float = 0.5
    learning_rate: float = 2e-3
    batch_size: int = 64
    max_len: int = 20
    stride: int | None = None
    negatives: int = 2048
    sample_alpha: float = 0.0
    epochs: int = 25
    patience: int = 4
    lr_decay: float = 0.5
    validation_cases: int = 5000
    max_train_seconds: float | None = None
    seed: int = 7

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class TrainResult:
    model: SessionModel
    history: list[dict[str, float]]
    train_seconds: float
    updates: int
    best_epoch: int
    config: GRUConfig


def _batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Length-bucketed batches in random order: windows of similar length share a batch."""
    order = np.lexsort((rng.random(lengths.size), lengths))
    batches = [order[i : i + batch_size] for i in range(0, order.size, batch_size)]
    rng.shuffle(batches)  # type: ignore[arg-type]
    return batches


def _pad_right_aligned(rows: Sequence[np.ndarray], dtype: Any) -> np.ndarray:
    width = max(len(r) for r in rows)
    out = np.zeros((len(rows), width), dtype=dtype)
    for n, row in enumerate(rows):
        out[n, width - len(row) :] = row
    return out


def train_gru(
    train_sequences: Sequence[np.ndarray],
    vocab: Vocabulary,
    validation: Sequence[EvalCase],
    config: GRUConfig | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train on encoded sequences; early-stop on ``validation`` MRR@20; return the best model."""
    cfg = config or GRUConfig()
    tf = tensorflow()
    k = keras()
    k.utils.set_random_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)

    xs, ys, ms = training_windows(train_sequences, cfg.max_len, cfg.stride)
    if not xs:
        raise ValueError("no training windows: every sequence is shorter than 2 items")
    lengths = np.array([len(x) for x in xs])

    counts = np.zeros(vocab.size, dtype=np.float64)
    for seq in train_sequences:
        np.add.at(counts, seq, 1.0)
    counts[:FIRST_ITEM_INDEX] = 0.0
    sampling = counts**cfg.sample_alpha
    sampling /= sampling.sum()
    n_negatives = min(cfg.negatives, vocab.size - FIRST_ITEM_INDEX)

    encoder = build_encoder(
        vocab.size,
        cfg.embedding_dim,
        cfg.hidden_units,
        cfg.n_layers,
        cfg.dropout_embedding,
        cfg.dropout_hidden,
        cfg.tied,
        cfg.item_skip,
    )
    head = OutputHead(encoder)
    optimizer = k.optimizers.Adam(learning_rate=cfg.learning_rate)
    variables = encoder.trainable_variables

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None], tf.int32),
            tf.TensorSpec([None, None], tf.int32),
            tf.TensorSpec([None, None], tf.float32),
            tf.TensorSpec([None], tf.int32),
        ],
        reduce_retracing=True,
    )
    def train_step(x: Any, y: Any, m: Any, negatives: Any) -> Any:
        with tf.GradientTape() as tape:
            reps = head.vectors(x, training=True)
            keep = m > 0
            hidden = tf.boolean_mask(reps, keep)
            targets = tf.boolean_mask(y, keep)
            candidates, where = tf.unique(tf.concat([targets, negatives], axis=0))
            logits = head.logits(hidden, candidates)
            labels = where[: tf.shape(targets)[0]]
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            )
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return loss

    model = SessionModel(encoder, vocab, max_len=cfg.max_len)
    val_cases = list(validation)
    if len(val_cases) > cfg.validation_cases:
        pick = rng.choice(len(val_cases), size=cfg.validation_cases, replace=False)
        val_cases = [val_cases[i] for i in np.sort(pick)]

    history: list[dict[str, float]] = []
    best_mrr, best_epoch, best_weights, stale, updates = -1.0, 0, None, 0, 0
    started = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        batches = _batches(lengths, cfg.batch_size, rng)
        losses = []
        iterator: Any = batches
        if progress:
            from tqdm import tqdm

            iterator = tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", leave=False)
        for batch in iterator:
            x = _pad_right_aligned([xs[i] for i in batch], np.int32)
            y = _pad_right_aligned([ys[i] for i in batch], np.int32)
            m = _pad_right_aligned([ms[i] for i in batch], np.float32)
            negatives = rng.choice(vocab.size, size=n_negatives, p=sampling).astype(np.int32)
            loss = float(train_step(x, y, m, negatives))
            losses.append(loss)
            updates += 1
            if progress and updates % 10 == 0:
                iterator.set_postfix(loss=f"{loss:.3f}")
        if not all(math.isfinite(v) for v in losses):
            raise FloatingPointError(f"training diverged in epoch {epoch} (non-finite loss)")
        val = evaluate(model, val_cases, vocab) if val_cases else {"mrr@20": 0.0}
        elapsed = time.perf_counter() - started
        row = {
            "epoch": float(epoch),
            "updates": float(updates),
            "loss": float(np.mean(losses)),
            "val_mrr@20": val["mrr@20"],
            "val_recall@20": val.get("recall@20", 0.0),
            "seconds": elapsed,
        }
        history.append(row)
        log.info(
            "epoch %d: %d updates, loss %.4f, val MRR@20 %.4f, Recall@20 %.4f, %.1fs",
            epoch,
            updates,
            row["loss"],
            row["val_mrr@20"],
            row["val_recall@20"],
            elapsed,
        )
        if val["mrr@20"] > best_mrr:
            best_mrr, best_epoch, stale = val["mrr@20"], epoch, 0
            best_weights = [np.array(v.numpy(), copy=True) for v in encoder.weights]
        else:
            stale += 1
            if stale >= cfg.patience:
                break
            # A plateau is often noise at too high a step size: halve it and carry on.
            optimizer.learning_rate.assign(float(optimizer.learning_rate.numpy()) * cfg.lr_decay)
        if cfg.max_train_seconds is not None and elapsed >= cfg.max_train_seconds:
            log.info("time budget of %.0fs reached after epoch %d", cfg.max_train_seconds, epoch)
            break
    if best_weights is not None:
        for variable, value in zip(encoder.weights, best_weights, strict=True):
            variable.assign(value)
    return TrainResult(
        model=model,
        history=history,
        train_seconds=time.perf_counter() - started,
        updates=updates,
        best_epoch=best_epoch,
        config=cfg,
    )
