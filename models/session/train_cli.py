"""``streamrec train-session``: train the GRU, evaluate it against the baselines, ship a version.

    streamrec train-session --dataset movielens100k|synthetic|PATH|kafka \
        --protocol session|leave-one-out --out FILE [--every 15m]

Steps: read events (a built-in dataset, a JSONL/CSV file, or the events topic from the beginning
up to now); split; fit popularity, item-kNN and Markov and train the GRU on the same training
split; rank the same test cases with all of them; write ``--out`` (JSON) and a PNG chart; save a
versioned artifact into the model store; announce it on the model-updates topic when a broker is
configured. ``--every`` repeats the whole cycle on a period (fresh data from the topic each time).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.datasets import load_dataset
from models.datasets.base import TIE_ORDERS
from models.session.data import recent_window
from models.session.experiment import PROTOCOLS, Experiment, run_experiment
from models.session.params import preset

log = logging.getLogger("streamrec.train_session")

#: Reads the events topic from the beginning up to now: (events in stream order, invalid
#: messages skipped).
TopicReader = Callable[[], tuple[list[Any], int]]
#: Announces a saved version (name, path, test metrics); raises if the announcement failed.
Announcer = Callable[[str, str, dict[str, float]], None]


@dataclass(frozen=True, slots=True)
class Adapters:
    """What the trainer needs from outside the learning code, passed in by the command that
    runs it (``stream_app.cli.train_session`` wires in Kafka): learning code imports no adapter."""

    read_topic: TopicReader | None = None
    announce: Announcer | None = None


#: ``run_once``'s exit code when there were too few events to train on (the loop looks again
#: soon rather than a period later).
TOO_FEW_EVENTS = 3

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _yes_no(text: str) -> bool:
    if text.lower() in ("yes", "true", "1"):
        return True
    if text.lower() in ("no", "false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r}: expected yes or no")


def _protocol(text: str) -> str:
    """A protocol name, ``loo`` accepted for leave-one-out.

    >>> _protocol("loo"), _protocol("session")
    ('leave-one-out', 'session')
    """
    name = "leave-one-out" if text == "loo" else text
    if name not in PROTOCOLS:
        raise argparse.ArgumentTypeError(f"{text!r}: expected session or loo (leave-one-out)")
    return name


def parse_duration(text: str) -> float:
    """``90``, ``30s``, ``15m``, ``1h``, ``1d`` -> seconds.

    >>> parse_duration("15m"), parse_duration("1.5h"), parse_duration("45")
    (900.0, 5400.0, 45.0)
    """
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30s, 15m, 1h")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


#: (flag, type, GRUConfig field) of every hyper-parameter flag; None means "use the preset".
_HP_FLAGS: tuple[tuple[str, Any, str], ...] = (
    ("--epochs", int, "epochs"),
    ("--min-updates", int, "min_updates"),
    ("--batch-size", int, "batch_size"),
    ("--embedding-dim", int, "embedding_dim"),
    ("--hidden-units", int, "hidden_units"),
    ("--layers", int, "n_layers"),
    ("--dropout-embedding", float, "dropout_embedding"),
    ("--dropout-hidden", float, "dropout_hidden"),
    ("--learning-rate", float, "learning_rate"),
    ("--negatives", int, "negatives"),
    ("--sample-alpha", float, "sample_alpha"),
    ("--max-len", int, "max_len"),
    ("--patience", int, "patience"),
    ("--lr-decay", float, "lr_decay"),
    ("--max-train-seconds", float, "max_train_seconds"),
    ("--seed", int, "seed"),
    ("--tied", lambda text: _yes_no(text), "tied"),
    ("--item-skip", lambda text: _yes_no(text), "item_skip"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset",
        default="movielens100k",
        help="movielens100k, synthetic, kafka (the events topic) or a JSONL/CSV file",
    )
    data.add_argument("--synthetic-events", type=int, default=None, help="size of synthetic")
    data.add_argument("--protocol", type=_protocol, default="session", help="session or loo")
    data.add_argument(
        "--tie-order",
        choices=TIE_ORDERS,
        default="id",
        help="same-timestamp events of a dataset or file: by user and item id (id), or in the "
        "file's order (file, as RecBole keeps them)",
    )
    data.add_argument(
        "--gap-s", type=float, default=None, help="session inactivity gap (default: settings)"
    )
    data.add_argument("--min-support", type=int, default=1, help="rarer items become OOV")
    data.add_argument("--val-fraction", type=float, default=0.1)
    data.add_argument("--test-fraction", type=float, default=0.1)
    data.add_argument("--kafka-timeout-s", type=float, default=30.0)

    hp = parser.add_argument_group("GRU hyper-parameters (default: the dataset's preset)")
    for flag, kind, field in _HP_FLAGS:
        hp.add_argument(flag, type=kind, default=None, dest=field)

    out = parser.add_argument_group("output")
    out.add_argument("--out", type=Path, default=None, help="write the results JSON here")
    out.add_argument("--chart", type=Path, default=None, help="PNG chart (default: OUT.png)")
    out.add_argument("--store", type=Path, default=None, help="model store (default: settings)")
    out.add_argument("--no-save", action="store_true", help="evaluate only, write no artifact")
    out.add_argument(
        "--publish",
        choices=("auto", "always", "never"),
        default="auto",
        help="announce on model-updates: auto = when STREAMREC_KAFKA_BOOTSTRAP is set",
    )
    out.add_argument("--every", type=parse_duration, default=None, help="retrain every 15m, 1h...")
    out.add_argument("--no-progress", action="store_true", help="no per-epoch progress bars")


_HP_FIELDS = tuple(field for _, _, field in _HP_FLAGS)


def _load_events(
    args: argparse.Namespace, read_topic: TopicReader | None
) -> tuple[str, list[Any], int]:
    """(dataset name, events in stream order, invalid messages skipped)."""
    if args.dataset == "kafka":
        if read_topic is None:
            raise ValueError(
                "--dataset kafka needs a topic reader (run it as streamrec train-session)"
            )
        events, invalid = read_topic()
        settings = args.settings
        window = recent_window(events, settings.train_window_s, settings.train_window_events)
        if len(window) < len(events):
            log.info(
                "training window: the newest %d of %d events (STREAMREC_TRAIN_WINDOW_S %g, "
                "STREAMREC_TRAIN_WINDOW_EVENTS %d)",
                len(window),
                len(events),
                settings.train_window_s,
                settings.train_window_events,
            )
        return "kafka", window, invalid
    dataset = load_dataset(
        args.dataset, synthetic_events=args.synthetic_events, tie_order=args.tie_order
    )
    name = args.dataset if args.dataset in ("movielens100k", "synthetic") else dataset.name
    return name, dataset.events, 0


def _smoke_prefix(exp: Experiment) -> list[str]:
    for case in exp.split.test or exp.split.validation:
        known = [item for item in case.prefix if item in exp.vocab]
        if known:
            return known[-5:]
    return exp.vocab.items[:3]


def run_once(args: argparse.Namespace, adapters: Adapters = Adapters()) -> int:
    settings = args.settings
    name, events, invalid = _load_events(args, adapters.read_topic)
    if not events or (name == "kafka" and len(events) < settings.train_min_events):
        log.warning(
            "%d events to train on, fewer than STREAMREC_TRAIN_MIN_EVENTS (%d)",
            len(events),
            settings.train_min_events,
        )
        return TOO_FEW_EVENTS
    config = preset(name, args.protocol, **{f: getattr(args, f) for f in _HP_FIELDS})
    gap_s = args.gap_s if args.gap_s is not None else settings.session_gap_s
    exp = run_experiment(
        events,
        name,
        args.protocol,
        config,
        gap_s=gap_s,
        min_support=args.min_support,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        progress=not args.no_progress,
    )
    exp.data["invalid_events_skipped"] = invalid
    exp.data["tie_order"] = "id" if name == "kafka" else args.tie_order
    results = exp.results_json()
    for model, metrics in exp.models.items():
        log.info(
            "%-12s Recall@20 %.4f  MRR@20 %.4f  Recall@10 %.4f  MRR@10 %.4f  NDCG@10 %.4f",
            model,
            metrics["recall@20"],
            metrics["mrr@20"],
            metrics["recall@10"],
            metrics["mrr@10"],
            metrics["ndcg@10"],
        )
    artifact = None
    if not args.no_save:
        from models.session.artifacts import save_artifact
        from models.session.store import prune

        store = args.store or settings.model_store
        artifact = save_artifact(
            exp.gru.model,
            store,
            {
                "dataset": name,
                "protocol": args.protocol,
                "data": exp.data,
                "metrics": exp.models["gru"],
                "baselines": {k: v for k, v in exp.models.items() if k != "gru"},
                "hyperparameters": config.to_json_dict(),
                "train_seconds": round(exp.gru.train_seconds, 2),
                "updates": exp.gru.updates,
                "best_epoch": exp.gru.best_epoch,
            },
            smoke_prefix=_smoke_prefix(exp),
            holdout=exp.split.test,
        )
        results["artifact"] = {"version": artifact.name, "path": str(artifact)}
        log.info("saved version %s in %s", artifact.name, artifact)
        results["deleted_versions"] = prune(store, settings.model_keep)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        from models.session.chart import comparison_chart

        chart = args.chart or args.out.with_suffix(".png")
        comparison_chart(exp.models, f"{name} · {args.protocol} protocol (test split)", chart)
        log.info("wrote %s and %s", args.out, chart)
    if artifact is not None and adapters.announce is not None:
        try:
            adapters.announce(artifact.name, str(artifact.resolve()), exp.models["gru"])
        except Exception as exc:  # the version is in the store either way; pollers will find it
            log.warning("could not announce %s: %s", artifact.name, exc)
            if args.publish == "always":
                return 1
    return 0


def run(args: argparse.Namespace, adapters: Adapters = Adapters()) -> int:
    """One cycle, or with ``--every`` one per period; a cycle that found too few events looks
    again after ``settings.train_poll_s``, so a trainer started before the events trains as
    soon as they exist, not a whole period later."""
    if args.every is None:
        return run_once(args, adapters)
    while True:
        started = time.monotonic()
        code = 1
        try:
            code = run_once(args, adapters)
            if code == TOO_FEW_EVENTS:
                log.info("looking for events again in %gs", args.settings.train_poll_s)
            elif code:
                log.warning("training cycle failed with exit code %d; retrying next period", code)
        except Exception:
            log.exception("training cycle failed; retrying next period")
        period = args.settings.train_poll_s if code == TOO_FEW_EVENTS else args.every
        time.sleep(max(0.0, period - (time.monotonic() - started)))
