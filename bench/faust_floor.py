"""The floor of the worker's consumption: CPU per event of a Faust agent that only takes batches,
with the events topic on ``RawSchema`` and on Faust's own raw-bytes schema, side by side.

Each round starts both agents at the same time (our app class and Kafka transport, the worker's
batch bounds; separate consumer groups on one topic of ``--events`` synthetic events produced
first), so both see the same machine moment, and records each one's CPU per event and rate
from its first batch to its last event. What the worker does beyond this floor is its own work.

    .venv/bin/python bench/faust_floor.py --rounds 2

writes bench/results/faust_floor.json. Needs the stack up (``make stack-up``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import e2e  # noqa: E402  (bench/, this script's folder, is on the path)
from results_file import command_line, write_results  # noqa: E402

SCHEMAS = ("raw_schema", "faust_raw")


def run_agent(
    schema: str, topic: str, events: int, app_id: str, port: int, result_path: Path
) -> None:
    """One floor agent (a subprocess): write its result to ``result_path`` as JSON, then exit
    (a Faust worker sends what is printed to its log, so not to stdout)."""
    from stream_app.kafka.raw_schema import RawSchema
    from stream_app.settings import Settings
    from stream_app.worker.app import StreamApp, faust_settings

    settings = Settings.from_env()
    conf = {**faust_settings(settings), "web_port": port}
    Path(conf["datadir"]).mkdir(parents=True, exist_ok=True)
    app = StreamApp(app_id, **conf)
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms
    if schema == "raw_schema":
        source = app.topic(topic, schema=RawSchema())
    else:
        source = app.topic(
            topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )
    seen = {"events": 0}
    start: list[float] = []

    async def floor(stream: Any) -> Any:
        async for batch in stream.take_events(
            settings.batch_max_events, within=settings.batch_max_delay_s
        ):
            if not start:
                start[:] = [time.perf_counter(), time.process_time()]
            seen["events"] += len(batch)
            if seen["events"] >= events:
                wall = time.perf_counter() - start[0]
                cpu = time.process_time() - start[1]
                result = {
                    "schema": schema,
                    "events": seen["events"],
                    "events_per_s": seen["events"] / wall,
                    "cpu_ms_per_event": 1000 * cpu / seen["events"],
                }
                result_path.write_text(json.dumps(result))
                os._exit(0)
            yield None

    app.agent(source, name="floor")(floor)
    sys.argv = [sys.argv[0], "worker", "-l", "warn"]
    app.main()


def one_round(
    topic: str, events: int, state: Path, app_prefix: str, timeout_s: float
) -> list[dict[str, Any]]:
    """Both agents at once, each in its own consumer group ``<app_prefix>-<schema>``; their
    results, in ``SCHEMAS`` order. An agent still running after ``timeout_s`` is killed."""
    procs = []
    try:
        for schema in SCHEMAS:
            env = {**os.environ, "STREAMREC_STATE_DIR": str(state), "PYTHONUNBUFFERED": "1"}
            result_path = state / f"{app_prefix}-{schema}.json"
            cmd = [sys.executable, __file__, "--agent", schema, "--topic", topic]
            cmd += ["--events", str(events), "--app-id", f"{app_prefix}-{schema}"]
            cmd += ["--port", str(e2e.free_port()), "--result", str(result_path)]
            with (state / f"{app_prefix}-{schema}.log").open("wb") as log:
                procs.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=log), result_path))
        results = []
        for proc, result_path in procs:
            proc.wait(timeout=timeout_s)
            if not result_path.exists():
                raise RuntimeError(f"a floor agent gave no result (exit {proc.returncode})")
            results.append(json.loads(result_path.read_text()))
        return results
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--timeout-s", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "faust_floor.json")
    parser.add_argument("--agent", choices=SCHEMAS, help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--app-id", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.agent:
        run_agent(args.agent, args.topic, args.events, args.app_id, args.port, args.result)
        return 0

    from models.datasets import load_dataset
    from stream_app.settings import Settings

    settings = Settings.from_env()
    run_id = uuid.uuid4().hex[:8]
    topic = f"bench.floor.{run_id}"
    e2e.create_topic(settings, topic)
    events = list(load_dataset("synthetic", synthetic_events=args.events, seed=args.seed).events)
    e2e.produce(settings, topic, events)
    rounds = []
    try:
        with tempfile.TemporaryDirectory(prefix="streamrec-floor-") as state:
            for n in range(args.rounds):
                prefix = f"floor-{run_id}-{n + 1}"
                rounds.append(one_round(topic, len(events), Path(state), prefix, args.timeout_s))
                print(f"round {n + 1}: {rounds[-1]}", file=sys.stderr)
    finally:
        # The topic and the agents' own (Faust's leader topics start with the app id).
        e2e.delete_topics(settings, [topic, f"floor-{run_id}-"])
    result = {
        "rounds": rounds,
        "events": len(events),
        "batch_max_events": settings.batch_max_events,
        "command": command_line("bench/faust_floor.py", argv),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    write_results(args.out, result, echo=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
