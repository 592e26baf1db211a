"""CPU of encoding an item's published list, against the encoding it replaced, in the same run.

The item side encodes every touched item's top-M neighbours and successors on each of its
batches: the JSON stored under ``{prefix}:neighbors:{item}`` (``stream_app.cache.base.
encode_neighbors``), scores rounded to 6 decimals. Rounded by numpy over the whole list against
Python's ``round`` per score (the earlier form); the run also checks that both give the same
bytes on every list it times (the exit status is 1 if one differs).

    .venv/bin/python bench/encode_lists.py

writes bench/results/encode_lists.json (microseconds per list, best of ``--repeats``).
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import timeit
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from results_file import command_line, write_results  # noqa: E402

from stream_app.cache.base import encode_neighbors  # noqa: E402


def encode_per_score_round(neighbors: Sequence[tuple[str, float]]) -> bytes:
    """The encoding before this change: Python's ``round`` on each score."""
    return orjson.dumps([[item, round(float(s), 6)] for item, s in neighbors])


def per_call_us(fn: Callable[[], object], number: int, repeats: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeats)) / number * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lists", type=int, default=2000, help="distinct lists timed")
    parser.add_argument("--length", type=int, default=100, help="entries per list (top-M)")
    parser.add_argument("--catalogue", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "encode_lists.json"
    )
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    items = [str(rng.randrange(10**6)) for _ in range(args.catalogue)]
    lists = [
        sorted(
            ((rng.choice(items), rng.random()) for _ in range(args.length)),
            key=lambda pair: -pair[1],
        )
        for _ in range(args.lists)
    ]
    mismatches = sum(encode_neighbors(lst) != encode_per_score_round(lst) for lst in lists)

    def encode_new() -> None:
        for lst in lists:
            encode_neighbors(lst)

    def encode_old() -> None:
        for lst in lists:
            encode_per_score_round(lst)

    n = args.lists
    result = {
        "encode_us_per_list": per_call_us(encode_new, 1, args.repeats) / n,
        "encode_baseline_us_per_list": per_call_us(encode_old, 1, args.repeats) / n,
        "encode_bytes_mismatches": mismatches,
        "lists": n,
        "entries_per_list": args.length,
        "command": command_line("bench/encode_lists.py", argv),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
    }
    write_results(args.out, result, echo=True)
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
