"""What micro-batches cost the stream model: the live-vs-offline gap, reproduced in one process.

The worker learns and scores a micro-batch at a time: every event of a batch is judged and
learned with the neighbour and successor lists, the trending list and the rankers' weights as
they were when the batch began (the item side's lag on top of that is left out here). This
replays a stream through the worker's own functions (``StreamScorer.event_histories``,
``recommend``, ``learn``) in batches of B events, judging each event on an item new to its user
after the warm-up against the top 10 for its history just before it (the worker's sequential
HitRate). B=1 is the offline model of ``streamrec evaluate`` (the baseline, in the same run).

    python bench/batch_granularity.py --dataset movielens100k --events 50000 \
        --batch-events 1 115 --out bench/results/batch_granularity_movielens100k.json

Modes: ``ranker`` (as served: an event whose item is no candidate teaches nothing),
``ranker-outside-positives`` (such an event teaches its popularity against the candidates:
``StreamScorer(outside_positives=True)``, the first live ranker's rule), ``ranker-sgd`` (as
served, but plain SGD at 0.05, the first live ranker's optimizer), ``fixed-blend`` (no
learning).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from results_file import command_line, write_results  # noqa: E402

from models.datasets.registry import load_dataset  # noqa: E402
from models.events import Interaction  # noqa: E402
from models.online.stream import StreamModel  # noqa: E402

MODES = ("ranker", "ranker-outside-positives", "ranker-sgd", "fixed-blend")
NEVER = 10**15  # min_trained that is never reached: the fixed blend throughout


def replay(
    events: Sequence[Interaction], batch: int, mode: str, k: int = 10, warmup: float = 0.1
) -> dict[str, Any]:
    """HitRate@k and MRR@k of the stream model fed ``batch`` events at a time."""
    model = StreamModel(partitions=4, min_trained=NEVER if mode == "fixed-blend" else 1_000)
    scorer = model.scorer
    scorer.outside_positives = mode == "ranker-outside-positives"
    if mode == "ranker-sgd":
        scorer.optimizer, scorer.learning_rate = "sgd", 0.05
    warm = int(len(events) * warmup)
    hits = trials = 0
    rr = 0.0
    previous_ms = events[0].timestamp_ms
    started = time.process_time()
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        trending = model.popularity.top(model.trending_depth, previous_ms)
        before = {e.user_id: model.histories.get(e.user_id, []) for e in chunk}
        rows = [
            (e.user_id, e.item_id, e.timestamp_ms, scorer.partition_of(e.user_id)) for e in chunk
        ]
        priors = scorer.event_histories(before, rows, model.history_len)
        judged = {
            f"{rows[j][0]}\x00{j}": j
            for j in range(len(chunk))
            if start + j >= warm and rows[j][1] not in priors[j]
        }
        if judged:
            ranked = scorer.recommend(
                {key: priors[j] for key, j in judged.items()},
                model.neighbors,
                model.successors,
                trending,
                k,
                partition_of=lambda key: scorer.partition_of(key.split("\x00")[0]),
            )
            for key, j in judged.items():
                items = [r.item_id for r in ranked[key]]
                trials += 1
                if rows[j][1] in items:
                    hits += 1
                    rr += 1.0 / (items.index(rows[j][1]) + 1)
        scorer.learn(before, rows, model.neighbors, model.successors, trending, priors=priors)
        for event in chunk:
            model.learn_statistics(event)
        previous_ms = chunk[-1].timestamp_ms
    return {
        "batch_events": batch,
        "mode": mode,
        f"hit_rate@{k}": hits / trials if trials else None,
        f"mrr@{k}": rr / trials if trials else None,
        "trials": trials,
        "cpu_s": round(time.process_time() - started, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="movielens100k")
    parser.add_argument("--events", type=int, default=50_000, help="the stream's first N events")
    parser.add_argument("--synthetic-events", type=int, default=100_000)
    parser.add_argument("--batch-events", type=int, nargs="+", default=[1, 115])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    events = load_dataset(args.dataset, synthetic_events=args.synthetic_events).events
    events = list(events)[: args.events]
    runs = []
    for batch in args.batch_events:
        for mode in args.modes:
            run = replay(events, batch, mode)
            print(run, flush=True)
            runs.append(run)
    out = args.out or ROOT / f"bench/results/batch_granularity_{args.dataset}.json"
    write_results(
        out,
        {
            "command": command_line("bench/batch_granularity.py", argv),
            "dataset": args.dataset,
            "events": len(events),
            "runs": runs,
        },
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
