"""``streamrec evaluate --system``: the system replay, the online model alone and the baselines.

One prequential pass (:mod:`models.evaluation.prequential`) over the stream with the
:class:`models.online.system.SystemModel`, its variants and the baselines of ``streamrec
evaluate``. With ``--tune-fraction`` the blend's one setting (the session model's places in a
list) is chosen on the trials of the first part of the stream and every metric counts only the
rest. Writes ``--out`` (JSON: ``models``, ``swaps``, ``tuning``) and a PNG beside it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from models.datasets import load_dataset
from models.evaluation.prequential import prequential
from models.events import DEFAULT_FEEDBACK, Feedback
from models.online.stream.scoring import ScoringParams
from models.online.system import SESSION_SLOTS, SessionTrainer, SystemModel

BASELINE_PREFIXES = ("popularity", "decayed_popularity", "itemknn", "markov")


def replay_config(args: argparse.Namespace) -> Any:
    """The GRU of each retrain (None with ``--no-gru``): small and cheap, its length set by
    the minimum-updates schedule rather than by epochs."""
    if args.no_gru:
        return None
    from models.session.trainer import GRUConfig

    return GRUConfig(
        epochs=1,
        min_updates=args.min_updates,
        patience=1,
        max_len=10,
        negatives=512,
        validation_cases=1000,
    )


def _row(slots: int) -> str:
    """The results row of a blend variant (0 places: the online model alone)."""
    return f"system_slots{slots}" if slots else "online"


def _choose(results: dict[str, Any], slots: list[int], k: int, tuned: bool) -> int:
    """The places given to the session model (0: none): the best on the tuning trials
    (HitRate, then MRR, then fewer places), or the worker's default without a tuning part."""
    if not tuned:
        return SESSION_SLOTS if SESSION_SLOTS in slots else max(slots)
    return max(
        sorted(slots),  # max keeps the first best: fewer places on a tie
        key=lambda s: (results[_row(s)][f"tune_hit_rate@{k}"], results[_row(s)][f"tune_mrr@{k}"]),
    )


def _comparison(models: dict[str, Any], k: int) -> dict[str, Any]:
    """The system and the online model against the best baseline, metric by metric."""
    baselines = [n for n in models if n.startswith(BASELINE_PREFIXES)]
    out: dict[str, Any] = {}
    for metric in (f"hit_rate@{k}", f"mrr@{k}"):
        best = max(baselines, key=lambda n: models[n][metric])
        value = models[best][metric]
        out[metric] = {
            "best_baseline": best,
            "baseline": value,
            "system": models["system"][metric],
            "online": models["online"][metric],
            "system_ratio": models["system"][metric] / value if value else None,
            "online_ratio": models["online"][metric] / value if value else None,
        }
    return out


def run(
    args: argparse.Namespace,
    feedback: Feedback = DEFAULT_FEEDBACK,
    params: ScoringParams | None = None,
    gap_s: float = 1800.0,
) -> int:
    """Replay, choose, report; ``feedback``, ``params`` and ``gap_s`` are the worker's."""
    from models.online.evaluate_cli import build_models

    dataset = load_dataset(args.dataset, synthetic_events=args.synthetic_events, seed=args.seed)
    events = dataset.events[: args.limit] if args.limit else dataset.events
    baselines = build_models(dataset, [], True, args.seed, feedback=feedback, params=params)
    stream = baselines.pop("streamrec")
    trainer = SessionTrainer(
        every_ms=int(args.retrain_every * 1000),
        window_ms=int(args.window * 1000),
        config=replay_config(args),
        gap_s=gap_s,
        min_events=args.min_window_events,
        feedback=feedback,
    )
    slots = sorted({int(s) for s in args.session_slots.split(",")} | {0})
    system = SystemModel(stream, trainer, slots=slots, primary=max(slots))
    views: dict[str, Any] = {"online": system.view(0)}
    views.update({f"system_slots{s}": system.view(s) for s in slots if s > 0})
    started = time.perf_counter()
    result = prequential(
        events,
        {"system_primary": system, **views, **baselines},
        k=args.k,
        warmup=args.warmup,
        feedback=feedback,
        tune_fraction=args.tune_fraction,
    )
    wall = time.perf_counter() - started
    output = _output(args, dataset.name, result, trainer, slots, wall)
    _report(output, args)
    return 0


def _output(
    args: argparse.Namespace,
    name: str,
    result: dict[str, Any],
    trainer: SessionTrainer,
    slots: list[int],
    wall_s: float,
) -> dict[str, Any]:
    """The results document: the chosen system first, then the online model, the variants
    and the baselines; the tuning and the swap timeline."""
    k, models = args.k, result["models"]
    models.pop("system_primary")
    tuned = args.tune_fraction > args.warmup
    chosen = _choose(models, slots, k, tuned)
    ordered = {"system": models[_row(chosen)]}
    ordered.update(models)
    return {
        "dataset": name,
        "protocol": {
            **result["protocol"],
            "limit": args.limit,
            "seed": args.seed,
            "retrain_every_s": args.retrain_every,
            "window_s": args.window,
            "session_model": "baselines blend" if args.no_gru else "GRU + baselines blend",
            "min_updates": None if args.no_gru else args.min_updates,
            "wall_s": round(wall_s, 1),
            "views": "online and system_slots* are ranked by the system in the same trial; "
            "their own cost is the system's",
        },
        "models": ordered,
        "comparison": _comparison(ordered, k),
        "tuning": {
            "setting": "session_slots (places of the session model in a list, 0 = off)",
            "chosen": chosen,
            "chosen_on": f"tune_hit_rate@{k}, then tune_mrr@{k}" if tuned else "worker default",
            "candidates": {
                str(s): {m: models[_row(s)].get(f"tune_{m}") for m in (f"hit_rate@{k}", f"mrr@{k}")}
                for s in slots
            },
        },
        "swaps": [swap.to_json_dict() for swap in trainer.swaps],
    }


def _report(output: dict[str, Any], args: argparse.Namespace) -> None:
    k = args.k
    for name, res in output["models"].items():
        print(f"{name:24s} HR@{k} {res[f'hit_rate@{k}']:.4f}  MRR@{k} {res[f'mrr@{k}']:.4f}")
    for metric, row in output["comparison"].items():
        print(f"{metric}: system {row['system_ratio']:.3f}x {row['best_baseline']}")
    for swap in output["swaps"]:
        print(f"{swap['version']} at event {swap['event']}: {swap['reason']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(output, indent=2) + "\n")
        plot_system(output, args.out.with_suffix(".png"))
        print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


def plot_system(output: dict[str, Any], path: Path) -> None:
    """HitRate@k over the reported trials of the system, the online model and the best
    baseline, with each offer of a session model: accepted (solid) or refused (dotted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protocol, k = output["protocol"], output["protocol"]["k"]
    bucket = protocol["curve_bucket_events"]
    best = output["comparison"][f"hit_rate@{k}"]["best_baseline"]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for name in ("system", "online", best):
        curve = output["models"][name]["hit_rate_curve"]
        ax.plot([bucket * (n + 1) for n in range(len(curve))], curve, label=name)
    for swap in output["swaps"]:
        x = swap["trials_before"] - protocol["tune_events_scored"]
        if x >= 0:
            style = "-" if swap["accepted"] else ":"
            ax.axvline(x, color="black" if swap["accepted"] else "red", ls=style, alpha=0.6)
    ax.set_xlabel("reported trials (after the warm-up and any tuning part)")
    ax.set_ylabel(f"HitRate@{k} per {bucket} trials")
    ax.set_title(f"{output['dataset']}: system replay (black: swap, red dotted: refused)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
