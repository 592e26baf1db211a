"""Client CPU of the worker's bulk Redis writes: one EVAL of many commands against a pipeline.

    python bench/redis_writes.py [--n 500] [--calls 30] [--out bench/results/redis_writes.json]

The shapes are the worker's (``stream_app.cache.redis_backend``): a batch's trending increments
(``ZINCRBY`` per item) and its users' recommendation lists (``SET ... EX`` of ~1 KiB each), each
inside a ``MULTI`` transaction, written once as one command per key (the baseline, what the
worker did before) and once as one ``EVAL`` of ``ZINCRBY_MANY`` / ``SET_MANY``. Reports the
process CPU and the wall time per call (median of ``--calls``). Needs the stack's Redis
(``STREAMREC_REDIS_URL``); writes only under its own ``bench:redis-writes:*`` keys in db 15 and
deletes them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from results_file import command_line, write_results  # noqa: E402

from stream_app.cache.redis_backend import queue_set_many, queue_zincrby_many  # noqa: E402
from stream_app.settings import Settings  # noqa: E402

PREFIX = "bench:redis-writes"


def timed(call: Callable[[], object], calls: int) -> dict[str, float]:
    call()  # warm: connection, script cache
    cpu, wall = [], []
    for _ in range(calls):
        c0, w0 = time.process_time(), time.perf_counter()
        call()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return {"cpu_ms": 1000 * statistics.median(cpu), "wall_ms": 1000 * statistics.median(wall)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="keys per call (a batch's users)")
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "redis_writes.json"
    )
    args = parser.parse_args(argv)
    base_url = Settings.from_env().redis_url.rsplit("/", 1)[0]
    client = redis.Redis.from_url(f"{base_url}/15")
    items = {f"item{i}": 1.5 + i for i in range(args.n)}
    value = b'{"item_id":"1234","score":0.123457,"reason":"because you viewed 5678"},'
    recs = {f"{PREFIX}:recs:{i}": b'{"items":[' + value * 14 + b"]}" for i in range(args.n)}
    zset = f"{PREFIX}:trending"

    def zincrby_each() -> None:
        pipe = client.pipeline(transaction=True)
        for item, inc in items.items():
            pipe.zincrby(zset, inc, item)
        pipe.execute()

    def zincrby_eval() -> None:
        pipe = client.pipeline(transaction=True)
        queue_zincrby_many(pipe, zset, items)
        pipe.execute()

    def set_each() -> None:
        pipe = client.pipeline(transaction=True)
        for key, raw in recs.items():
            pipe.set(key, raw, ex=600)
        pipe.execute()

    def set_eval() -> None:
        pipe = client.pipeline(transaction=True)
        queue_set_many(pipe, recs, 600)
        pipe.execute()

    try:
        results = {
            name: timed(call, args.calls)
            for name, call in [
                ("zincrby_one_command_each", zincrby_each),
                ("zincrby_one_eval", zincrby_eval),
                ("set_ex_one_command_each", set_each),
                ("set_ex_one_eval", set_eval),
            ]
        }
    finally:
        client.delete(zset, *recs)
    out = {
        "command": command_line("bench/redis_writes.py", argv),
        "keys_per_call": args.n,
        "value_bytes": len(next(iter(recs.values()))),
        "calls": args.calls,
        "results": results,
    }
    write_results(args.out, out)
    for name, r in results.items():
        print(f"{name:28s} cpu {r['cpu_ms']:6.2f} ms  wall {r['wall_ms']:6.2f} ms")


if __name__ == "__main__":
    main()
