"""Where a benchmark's numbers go: one JSON file under ``bench/results/`` (and, if asked, the same
JSON on stdout), and the command line that reruns it, recorded inside.

Importable from any script in ``bench/`` (Python puts a script's own folder on ``sys.path``).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


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


def machine_load() -> dict[str, Any]:
    """The machine a figure came from and how busy it was at this moment: a speed measured on
    a shared 2-core VM reads differently at load 0.2 and at load 3.

    >>> sorted(machine_load())
    ['cpus', 'loadavg_1m_5m_15m', 'python']
    """
    return {
        "cpus": os.cpu_count(),
        "loadavg_1m_5m_15m": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
    }


def git_commit(root: Path = ROOT) -> str | None:
    """The short commit the run measured, ``-dirty`` when tracked files differ from it (the
    figure then belongs to no commit); None outside a git checkout."""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty else "")
