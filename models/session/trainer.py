"""Training the GRU: padded mini-batches, sampled softmax, early stopping on validation MRR@20.

Padded, masked batches bucketed by length, because Keras' GRU cannot reset one row's state in the
middle of a batch (which session-parallel training needs); sessions longer than ``max_len`` as
overlapping windows, so every target is trained once with history. Sampled softmax over the
batch's targets plus extra negatives, so a step's cost does not grow with the catalogue. Early
stopping on validation MRR@20 through the test evaluator, the learning rate decayed on a
plateau, the best weights restored; seeds fixed. Each choice, and the GRU4Rec pitfalls it
avoids: docs/session-model.md, "Design choices, and why".
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
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
    #: at least this many optimizer updates, however small the data (more epochs, and no early
    #: stop before them): five epochs of a 12k-event click log are a few hundred updates
    min_updates: int = 2000
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


def _negative_sampling(
    train_sequences: Sequence[np.ndarray], vocab_size: int, alpha: float
) -> np.ndarray:
    """The extra negatives' distribution: training counts ``** alpha``, normalised (padding
    and OOV counted as 0 before the power)."""
    counts = np.zeros(vocab_size, dtype=np.float64)
    for seq in train_sequences:
        np.add.at(counts, seq, 1.0)
    counts[:FIRST_ITEM_INDEX] = 0.0
    sampling = counts**alpha
    sampling /= sampling.sum()
    return sampling


def _train_step(head: OutputHead, optimizer: Any, variables: Any) -> Callable[..., Any]:
    """One compiled update: sampled softmax over the batch's targets plus ``negatives``."""
    tf = tensorflow()

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

    return train_step


def _validation_sample(
    validation: Sequence[EvalCase], limit: int, rng: np.random.Generator
) -> list[EvalCase]:
    """At most ``limit`` validation cases, a random subset in their original order."""
    cases = list(validation)
    if len(cases) > limit:
        pick = rng.choice(len(cases), size=limit, replace=False)
        cases = [cases[i] for i in np.sort(pick)]
    return cases


@dataclass(slots=True)
class _Epochs:
    """What every epoch of one training run shares: the windows, the negatives' draw, the
    compiled step, the progress bar's wish, and the update count so far."""

    train_step: Callable[..., Any]
    windows: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]
    sampling: np.ndarray
    n_negatives: int
    rng: np.random.Generator
    progress: bool
    updates: int = 0

    def fit(self, batches: list[np.ndarray], desc: str) -> list[float]:
        """One pass over ``batches``; the loss of each update."""
        xs, ys, ms = self.windows
        iterator: Any = batches
        if self.progress:
            from tqdm import tqdm

            iterator = tqdm(batches, desc=desc, unit="batch", leave=False)
        losses = []
        for batch in iterator:
            x = _pad_right_aligned([xs[i] for i in batch], np.int32)
            y = _pad_right_aligned([ys[i] for i in batch], np.int32)
            m = _pad_right_aligned([ms[i] for i in batch], np.float32)
            negatives = self.rng.choice(
                self.sampling.shape[0], size=self.n_negatives, p=self.sampling
            ).astype(np.int32)
            loss = float(self.train_step(x, y, m, negatives))
            losses.append(loss)
            self.updates += 1
            if self.progress and self.updates % 10 == 0:
                iterator.set_postfix(loss=f"{loss:.3f}")
        return losses


@dataclass(slots=True)
class _EarlyStop:
    """Early stopping on validation MRR@20 with the best weights kept, and the learning rate
    multiplied by ``lr_decay`` after an epoch that did not improve it."""

    patience: int
    lr_decay: float
    best_mrr: float = -1.0
    best_epoch: int = 0
    best_weights: list[np.ndarray] | None = None
    stale: int = 0

    def carry_on(self, epoch: int, mrr: float, encoder: Any, optimizer: Any) -> bool:
        """Record an epoch's validation MRR@20; False once ``patience`` epochs did not improve."""
        if mrr > self.best_mrr:
            self.best_mrr, self.best_epoch, self.stale = mrr, epoch, 0
            self.best_weights = [np.array(v.numpy(), copy=True) for v in encoder.weights]
            return True
        self.stale += 1
        if self.stale >= self.patience:
            return False
        # A plateau is often noise at too high a step size: halve it and carry on.
        optimizer.learning_rate.assign(float(optimizer.learning_rate.numpy()) * self.lr_decay)
        return True

    def restore(self, encoder: Any) -> None:
        """Put the best epoch's weights back (none recorded: leave the encoder as it is)."""
        if self.best_weights is not None:
            for variable, value in zip(encoder.weights, self.best_weights, strict=True):
                variable.assign(value)


def _epoch_row(
    epoch: int, updates: int, losses: list[float], val: dict[str, float], elapsed: float
) -> dict[str, float]:
    """An epoch's line of the training history, logged."""
    row = {
        "epoch": float(epoch),
        "updates": float(updates),
        "loss": float(np.mean(losses)),
        "val_mrr@20": val["mrr@20"],
        "val_recall@20": val.get("recall@20", 0.0),
        "seconds": elapsed,
    }
    log.info(
        "epoch %d: %d updates, loss %.4f, val MRR@20 %.4f, Recall@20 %.4f, %.1fs",
        epoch,
        updates,
        row["loss"],
        row["val_mrr@20"],
        row["val_recall@20"],
        elapsed,
    )
    return row


def train_gru(
    train_sequences: Sequence[np.ndarray],
    vocab: Vocabulary,
    validation: Sequence[EvalCase],
    config: GRUConfig | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train on encoded sequences; early-stop on ``validation`` MRR@20; return the best model."""
    cfg = config or GRUConfig()
    k = keras()
    k.utils.set_random_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    xs, ys, ms = training_windows(train_sequences, cfg.max_len, cfg.stride)
    if not xs:
        raise ValueError("no training windows: every sequence is shorter than 2 items")
    lengths = np.array([len(x) for x in xs])
    sampling = _negative_sampling(train_sequences, vocab.size, cfg.sample_alpha)
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
    train_step = _train_step(head, optimizer, encoder.trainable_variables)
    model = SessionModel(encoder, vocab, max_len=cfg.max_len)
    val_cases = _validation_sample(validation, cfg.validation_cases, rng)
    epochs = _Epochs(train_step, (xs, ys, ms), sampling, n_negatives, rng, progress)
    stop = _EarlyStop(cfg.patience, cfg.lr_decay)
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    per_epoch = math.ceil(len(xs) / cfg.batch_size)
    n_epochs = max(cfg.epochs, math.ceil(cfg.min_updates / per_epoch))
    for epoch in range(1, n_epochs + 1):
        batches = _batches(lengths, cfg.batch_size, rng)
        losses = epochs.fit(batches, f"epoch {epoch}/{n_epochs}")
        if not all(math.isfinite(v) for v in losses):
            raise FloatingPointError(f"training diverged in epoch {epoch} (non-finite loss)")
        val = evaluate(model, val_cases, vocab) if val_cases else {"mrr@20": 0.0}
        elapsed = time.perf_counter() - started
        history.append(_epoch_row(epoch, epochs.updates, losses, val, elapsed))
        going = stop.carry_on(epoch, val["mrr@20"], encoder, optimizer)
        if not going and epochs.updates >= cfg.min_updates:
            break
        if cfg.max_train_seconds is not None and elapsed >= cfg.max_train_seconds:
            log.info("time budget of %.0fs reached after epoch %d", cfg.max_train_seconds, epoch)
            break
    stop.restore(encoder)
    return TrainResult(
        model=model,
        history=history,
        train_seconds=time.perf_counter() - started,
        updates=epochs.updates,
        best_epoch=stop.best_epoch,
        config=cfg,
    )
