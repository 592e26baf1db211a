"""Inclusive and self shares of a ``py-spy record -f raw`` profile, per function or per stage.

    python bench/pyspy_summary.py PROFILE.raw [--under FUNCTION [--depth N] | --stages]

Without options: the 90 functions with the largest inclusive share and the 60 with the largest
self share. ``--under``: what the samples under ``FUNCTION`` (its name as py-spy prints it, e.g.
``LivePath.process``) spend, by the next ``--depth`` frames below it. ``--stages``: every sample
in the first of the worker's stages (:data:`STAGES`) its stack passes through, so the shares
add up to 100% and say where a worker's CPU per event goes.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

#: (stage, a frame or a chain of frames ``a>b`` a sample's stack holds), first match wins: the
#: user side's steps, then Faust's and aiokafka's consuming and producing, then threads.
STAGES: tuple[tuple[str, str], ...] = (
    ("learning: candidates", "StreamScorer.learn>StreamScorer.candidates"),
    ("learning: pairs and River", "StreamScorer.learn_from"),
    ("learning: list reads, priors", "OnlineScorer.learn_batch"),
    ("ranking the lists", "LivePath._ranked"),
    ("Redis writes of the lists", "LivePath.process.<locals>.commit"),
    ("online HitRate judge", "LivePath._judge"),
    ("trending", "LivePath._update_trending"),
    ("user side: rest of the batch", "LivePath.process"),
    ("item deltas out", "UserSide.send_deltas"),
    ("validating the batch", "sort_batch"),
    ("history table rows", "UserSide.merge_histories"),
    ("user side: rest", "UserSide.process"),
    ("Faust: take_events", "_guarded_batches"),
    ("Faust+aiokafka: fetch and deliver", "Fetcher._fetcher"),
    ("Faust: stream iteration", "Stream._passive_drainer"),
    ("Faust: producer buffer", "ProducerBuffer._handle_pending"),
    ("aiokafka: sender", "Sender."),
    ("aiokafka: connections", "AIOKafkaConnection"),
    ("item side (thread)", "_WorkItem.run"),
    ("consumer thread's loop", "WorkerThread.run"),
)


def frames(line: str) -> tuple[list[str], int]:
    """``(function (file) per frame, outermost first; sample count)`` of one raw line."""
    stack, _, count = line.rpartition(" ")
    names = []
    for frame in stack.split(";"):
        function, _, where = frame.partition(" (")
        path = where.split(":")[0].split("site-packages/")[-1]
        names.append(f"{function} ({path})" if path else function)
    return names, int(count)


def stage_of(short: list[str]) -> str:
    """The first stage of :data:`STAGES` whose frame (chain) the stack passes through, else
    ``"other: <innermost frame>"``.

    >>> stage_of(["main", "LivePath.process", "LivePath._judge", "mget"])
    'online HitRate judge'
    >>> stage_of(["main", "StreamScorer.learn", "StreamScorer.candidates", "_gather"])
    'learning: candidates'
    >>> stage_of(["main", "select"])
    'other: select'
    """
    chain = ">".join(short)
    for stage, marker in STAGES:
        if marker in chain:
            return stage
    return f"other: {short[-1]}"


def _print_shares(title: str, counts: Counter[str], total: int, most: int) -> None:
    print(title)
    for name, count in counts.most_common(most):
        print(f"{100 * count / max(total, 1):5.1f}% {name}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--under")
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--stages", action="store_true")
    args = parser.parse_args(argv)
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    below: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    total = under = 0
    for line in args.profile.read_text().splitlines():
        if not line.strip():
            continue
        names, count = frames(line)
        total += count
        for name in set(names):
            inclusive[name] += count
        own[names[-1]] += count
        short = [n.split(" (")[0] for n in names]
        stages[stage_of(short)] += count
        if args.under and args.under in short:
            at = short.index(args.under)
            under += count
            below[" > ".join(short[at + 1 : at + 1 + args.depth]) or "<self>"] += count
    print(f"samples {total}")
    if args.stages:
        _print_shares("== stages (each sample once)", stages, total, 40)
    elif args.under:
        print(f"== under {args.under}: {100 * under / max(total, 1):.1f}%")
        _print_shares("", below, total, 40)
    else:
        _print_shares("== inclusive", inclusive, total, 90)
        _print_shares("== self", own, total, 60)


if __name__ == "__main__":
    main()
