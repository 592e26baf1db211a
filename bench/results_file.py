"""Where a benchmark's numbers go: one JSON file under ``bench/results/`` (and, if asked, the same
JSON on stdout), and the command line that reruns it, recorded inside.

Importable from any script in ``bench/`` (Python puts a script's own folder on ``sys.path``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """``python <script> <arguments>`` as this run was started (``argv``: what ``main`` got,
    None for the process's own arguments).

    >>> command_line("bench/x.py", ["--rounds", "2"])
    'python bench/x.py --rounds 2'
    """
    return " ".join(["python", script, *(sys.argv[1:] if argv is None else argv)])


def write_results(path: Path, results: Mapping[str, Any], *, echo: bool = False) -> None:
    """Write ``results`` as indented JSON to ``path`` (its folder created), and to stdout too
    with ``echo``."""
    text = json.dumps(results, indent=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")
    if echo:
        print(text)
