"""Inclusive and self shares of a ``py-spy record -f raw`` profile, per function.

    python bench/pyspy_summary.py PROFILE.raw [--under FUNCTION [--depth N]]

Without ``--under``: the 90 functions with the largest inclusive share and the 60 with the
largest self share. With it: what the samples under ``FUNCTION`` (its name as py-spy prints it,
e.g. ``LivePath.process``) spend, by the next ``--depth`` frames below it.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def frames(line: str) -> tuple[list[str], int]:
    """``(function (file) per frame, outermost first; sample count)`` of one raw line."""
    stack, _, count = line.rpartition(" ")
    names = []
    for frame in stack.split(";"):
        function, _, where = frame.partition(" (")
        path = where.split(":")[0].split("site-packages/")[-1]
        names.append(f"{function} ({path})" if path else function)
    return names, int(count)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--under")
    parser.add_argument("--depth", type=int, default=1)
    args = parser.parse_args(argv)
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    below: Counter[str] = Counter()
    total = under = 0
    for line in args.profile.read_text().splitlines():
        if not line.strip():
            continue
        names, count = frames(line)
        total += count
        for name in set(names):
            inclusive[name] += count
        own[names[-1]] += count
        if args.under:
            short = [n.split(" (")[0] for n in names]
            if args.under in short:
                at = short.index(args.under)
                under += count
                below[" > ".join(short[at + 1 : at + 1 + args.depth]) or "<self>"] += count
    print(f"samples {total}")
    if args.under:
        print(f"== under {args.under}: {100 * under / max(total, 1):.1f}%")
        for name, count in below.most_common(40):
            print(f"{100 * count / total:5.1f}% {name}")
        return
    print("== inclusive")
    for name, count in inclusive.most_common(90):
        print(f"{100 * count / total:5.1f}% {name}")
    print("== self")
    for name, count in own.most_common(60):
        print(f"{100 * count / total:5.1f}% {name}")


if __name__ == "__main__":
    main()
