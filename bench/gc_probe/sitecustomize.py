"""A diagnostic, not part of the product: the garbage collector's time in ``streamrec worker``.

Put this folder on ``PYTHONPATH`` of a benchmark run (``bench/e2e.py`` and ``bench/compare.sh``
pass the environment on to the worker processes they start), e.g.::

    PYTHONPATH=bench/gc_probe GC_PROBE_DIR=/tmp/gc bash bench/compare.sh HEAD 2 -- \\
        --dataset synthetic --synthetic-events 300000 --workers 1 --skip-freshness --quality

Python imports ``sitecustomize`` at start-up; in a process started as ``... worker`` this one
times every collection with ``gc.callbacks`` and appends, every 5 s, one line per process to
``$GC_PROBE_DIR/gc-<pid>.log``: the thresholds, collections and milliseconds per generation,
the process CPU seconds so far and the objects tracked per generation. Other processes are left
alone. What ``stream_app.cli.worker.GC_THRESHOLDS`` cites was measured with it.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from pathlib import Path

INTERVAL_S = 5.0


def _install(out: Path) -> None:
    totals = {0: [0, 0.0], 1: [0, 0.0], 2: [0, 0.0]}
    started = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            entry = totals[info["generation"]]
            entry[0] += 1
            entry[1] += time.perf_counter() - started[0]

    def report() -> None:
        while True:
            time.sleep(INTERVAL_S)
            gens = " ".join(f"g{g}:{n}/{s * 1000:.0f}ms" for g, (n, s) in totals.items())
            tracked = [len(gc.get_objects(generation=g)) for g in (0, 1, 2)]
            with out.open("a") as f:
                f.write(
                    f"{time.time():.0f} thresholds={gc.get_threshold()} {gens} "
                    f"cpu_s={time.process_time():.1f} tracked={tracked}\n"
                )

    gc.callbacks.append(on_gc)
    threading.Thread(target=report, name="gc-probe", daemon=True).start()


if sys.argv[-1:] == ["worker"]:
    _dir = Path(os.environ.get("GC_PROBE_DIR", "/tmp"))
    _dir.mkdir(parents=True, exist_ok=True)
    _install(_dir / f"gc-{os.getpid()}.log")
