"""One evaluation run: split the events, fit the baselines and the GRU on the same training data,
rank the same test cases with all of them. The CLI and the benchmarks both call this.

In the session protocol it also fits session-kNN and the session blend (:mod:`.blend`: the
GRU and the session baselines mixed by validation), reported in ``extra``, apart from
``models`` (the GRU and the baselines a manifest records for the worker's gate).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from models.events import Interaction
from models.session.baselines import (
    ItemKNN,
    Markov,
    Popularity,
    SessionKNN,
    SessionPopularity,
)
from models.session.blend import SessionBlend
from models.session.data import (
    DEFAULT_GAP_S,
    Split,
    Vocabulary,
    leave_one_out,
    session_protocol,
)
from models.session.evaluation import evaluate

PROTOCOLS = ("session", "leave-one-out")


@dataclass(slots=True)
class Experiment:
    """Everything one run produced; ``models`` maps a model name to its test metrics."""

    dataset: str
    protocol: str
    split: Split
    vocab: Vocabulary
    models: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    gru: Any = None  # trainer.TrainResult
    #: the session blend (session protocol only)
    blend: SessionBlend | None = None
    #: test metrics of the rows that are not the gate's: session-kNN and the session blend
    extra: dict[str, dict[str, float]] = field(default_factory=dict)

    def results_json(self) -> dict[str, Any]:
        """The ``--out`` document: dataset, protocol, per-model metrics, training time, details."""
        gru = self.gru
        return {
            "dataset": self.dataset,
            "protocol": self.protocol,
            "models": {**self.models, **self.extra},
            "session_blend_weights": None if self.blend is None else self.blend.weights,
            "train_seconds": None if gru is None else round(gru.train_seconds, 2),
            "fit_seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "data": self.data,
            "gru": None
            if gru is None
            else {
                "updates": gru.updates,
                "best_epoch": gru.best_epoch,
                "config": gru.config.to_json_dict(),
                "history": gru.history,
            },
        }


def make_split(
    events: Sequence[Interaction],
    protocol: str,
    gap_s: float = DEFAULT_GAP_S,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> Split:
    if protocol == "session":
        return session_protocol(events, gap_s, val_fraction, test_fraction)
    if protocol == "leave-one-out":
        return leave_one_out(events)
    raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}")


def run_experiment(
    events: Sequence[Interaction],
    dataset: str,
    protocol: str,
    config: Any = None,
    gap_s: float = DEFAULT_GAP_S,
    min_support: int = 1,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    train_gru_model: bool = True,
    progress: bool = False,
) -> Experiment:
    """Split, fit baselines and (unless ``train_gru_model`` is False) the GRU, evaluate on test."""
    if not events:
        raise ValueError("no events")
    split = make_split(events, protocol, gap_s, val_fraction, test_fraction)
    vocab = Vocabulary.build((s.items for s in split.train), min_support=min_support)
    if vocab.size <= 2:
        raise ValueError("the training split has no items (too little data for this split?)")
    sequences = [vocab.encode(s.items) for s in split.train]
    exp = Experiment(dataset=dataset, protocol=protocol, split=split, vocab=vocab)
    oov_targets = sum(1 for c in split.test if c.target not in vocab)
    exp.data = {
        "events": len(events),
        "first_event_ms": min(e.timestamp_ms for e in events),
        "last_event_ms": max(e.timestamp_ms for e in events),
        "users": len({e.user_id for e in events}),
        "items": len({e.item_id for e in events}),
        "vocab_size": vocab.size,
        "min_support": min_support,
        "train_sequences": len(sequences),
        "train_targets": int(sum(max(len(s) - 1, 0) for s in sequences)),
        "validation_cases": len(split.validation),
        "test_cases": len(split.test),
        "test_targets_out_of_vocabulary": oov_targets,
        **split.info,
    }

    if train_gru_model:
        from models.session.trainer import train_gru

        result = train_gru(sequences, vocab, split.validation, config, progress=progress)
        exp.gru = result
        exp.seconds["gru"] = result.train_seconds
        exp.models["gru"] = evaluate(result.model, split.test, vocab)

    fitted = _fit_baselines(exp, sequences)
    if protocol == "session":
        parts = {"gru": exp.gru.model} if exp.gru is not None else {}
        parts.update({n: fitted[n] for n in ("session_pop", "session_knn", "item_knn", "markov")})
        started = time.perf_counter()
        exp.blend = SessionBlend.fit(parts, vocab, split.validation)
        exp.seconds["session_blend"] = time.perf_counter() - started
        exp.extra["session_blend"] = evaluate(exp.blend, split.test, vocab)
    return exp


def _fit_baselines(exp: Experiment, sequences: Sequence[Any]) -> dict[str, Any]:
    """Fit and evaluate every baseline of the protocol on the training sequences. Session-kNN
    goes to ``extra``: as a gate baseline it would refuse the GRU on the synthetic stream
    (docs/session-model.md), a serving decision left to the gate's owners."""
    size, fitted = exp.vocab.size, {}
    chosen: list[Any] = [Popularity(size)]
    if exp.protocol == "session":
        chosen += [SessionPopularity(size), SessionKNN(size)]
    for baseline in [*chosen, ItemKNN(size), Markov(size)]:
        started = time.perf_counter()
        fitted[baseline.name] = baseline.fit(sequences)
        exp.seconds[baseline.name] = time.perf_counter() - started
        rows = exp.extra if baseline.name == "session_knn" else exp.models
        rows[baseline.name] = evaluate(baseline, exp.split.test, exp.vocab)
    return fitted
