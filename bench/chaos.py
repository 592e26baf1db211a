"""Fault injection against a real stack of its own (``make chaos`` -> bench/results/chaos.json).

A private Kafka broker and Redis (``infra/stack.sh`` on free ports, in a temporary state dir)
and real ``streamrec worker`` / ``streamrec produce`` processes; the shared stack is never
touched. Scenarios: worker SIGKILLed three times during a replay with 1% malformed messages
(against a fault-free run of the same events), the broker SIGKILLed and restarted after 10 s,
Redis SIGKILLed and restarted with its data and empty, fuzzed messages, model store attacks.
Each reports events produced, counted, dead-lettered (total, unique), lost and duplicated,
crashes (worker exits nobody caused, Faust services crashed inside it) and recovery times.
What the numbers mean and what was measured: docs/stream.md, "Chaos".
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis
from chaos_models import scenario_model_attacks
from chaos_stack import (
    REPO,
    PrivateStack,
    Worker,
    counter,
    env_of,
    exactly_once,
    finish,
    lag,
    produce,
    rebuilt,
    scenario_settings,
    wait_until,
)
from results_file import command_line, write_results

from stream_app.cache import CacheKeys, UserRecs
from stream_app.cache.base import decode_neighbors
from stream_app.kafka.admin import ensure_topics
from stream_app.settings import Settings

#: Seconds the broker and Redis stay dead before they are restarted.
OUTAGE_S = 10.0


def _ready(settings: Settings, work: Path, name: str) -> Worker:
    """A worker for ``settings`` that has made its first generation marker (it is consuming)."""
    ensure_topics(settings)
    worker = Worker(settings, work / name)
    wait_until(lambda: worker.check() and rebuilt(settings), 240, f"{name}: worker ready")
    return worker


def _settle(settings: Settings, worker: Worker, good: int, invalid: int) -> dict[str, float]:
    """Wait until every message is counted or dead-lettered and the group's lag is 0."""
    started = time.monotonic()
    wait_until(
        lambda: (
            worker.check()
            and counter(settings, "events") >= good
            and counter(settings, "dlq") >= invalid
        ),
        900,
        f"{good} events and {invalid} dead letters counted",
    )
    counted_s = time.monotonic() - started
    lag_s = wait_until(lambda: worker.check() and lag(settings) == 0, 180, "lag 0")
    time.sleep(2 * settings.item_batch_delay_s + 1)  # the last item batch is published
    return {"drain_s": round(counted_s, 2), "lag_zero_after_drain_s": round(lag_s, 2)}


def _close(worker: Worker) -> dict[str, Any]:
    status = worker.stop()
    return {
        "crashes": worker.crashes + worker.agent_crashes() + (status != 0),
        "worker_kills": worker.kills,
        "worker_starts": worker.starts,
        "final_exit_status": status,
    }


def _rebuild(settings: Settings) -> float:
    """``streamrec rebuild-cache --wait``: every list recomputed from the tables now."""
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "stream_app.cli", "rebuild-cache", "--wait", "180"],
        cwd=REPO, env=env_of(settings), check=True, capture_output=True, timeout=240,
    )  # fmt: skip
    return round(time.monotonic() - started, 2)


def snapshot(settings: Settings) -> dict[str, dict[str, Any]]:
    """What a reader sees: every user's list, every item's neighbours, the norms, trending."""
    client = redis.Redis.from_url(settings.redis_url)
    keys, prefix = CacheKeys(settings.redis_key_prefix), settings.redis_key_prefix

    def read(kind: str) -> dict[str, bytes]:
        names = sorted(k.decode() for k in client.scan_iter(f"{prefix}:{kind}:*", count=5000))
        values = client.mget(names) if names else []
        return {n.rsplit(":", 1)[1]: v for n, v in zip(names, values, strict=True) if v}

    recs = {u: [r.item_id for r in UserRecs.from_json(v).items] for u, v in read("recs").items()}
    near = {i: [j for j, _ in decode_neighbors(v)] for i, v in read("neighbors").items()}
    norms = {k.decode(): float(v) for k, v in client.hgetall(keys.item_norms).items()}
    top = [m.decode() for m in client.zrevrange(keys.trending, 0, 49)]
    return {"recs": recs, "neighbors": near, "norms": norms, "trending": {"top50": top}}


def _agreement(a: dict[str, list[str]], b: dict[str, list[str]]) -> dict[str, Any]:
    both = sorted(a.keys() & b.keys())
    if not both:
        return {"in_both": 0, "only_one": len(a.keys() ^ b.keys())}
    jaccard = [len({*a[k]} & {*b[k]}) / max(len({*a[k]} | {*b[k]}), 1) for k in both]
    return {
        "in_both": len(both),
        "only_one": len(a.keys() ^ b.keys()),
        "exact": round(sum(a[k] == b[k] for k in both) / len(both), 4),
        "same_set": round(sum(set(a[k]) == set(b[k]) for k in both) / len(both), 4),
        "mean_jaccard": round(sum(jaccard) / len(both), 4),
    }


def compare(faulty: dict[str, dict], clean: dict[str, dict]) -> dict[str, Any]:
    """Fractions of users' lists and items' neighbour lists equal between two runs."""
    norms = [
        abs(faulty["norms"][i] - v) <= 1e-9 * max(abs(v), 1.0)
        for i, v in clean["norms"].items()
        if i in faulty["norms"]
    ]
    top_a, top_b = faulty["trending"]["top50"], clean["trending"]["top50"]
    return {
        "user_lists": _agreement(faulty["recs"], clean["recs"]),
        "neighbor_lists": _agreement(faulty["neighbors"], clean["neighbors"]),
        "item_norms_equal": round(sum(norms) / max(len(clean["norms"]), 1), 4),
        "item_norms_count": [len(faulty["norms"]), len(clean["norms"])],
        "trending_top50_overlap": len(set(top_a) & set(top_b)),
    }


def replayed_norms(events: int, seed: int) -> dict[str, float]:
    """Each item's squared norm as an offline pass over the producer's events gives it."""
    from models.datasets import load_dataset
    from models.events import event_weight

    norms: dict[str, float] = {}
    for e in load_dataset("synthetic", synthetic_events=events, seed=seed).events:
        norms[e.item_id] = norms.get(e.item_id, 0.0) + event_weight(e) ** 2
    return norms


def versus_replay(norms: dict[str, float], offline: dict[str, float]) -> dict[str, int]:
    """How many items' published norms equal, exceed or fall short of the offline pass's: an
    item side that applied a delta twice shows as "higher", one that missed one as "lower"."""
    out = {"equal": 0, "higher": 0, "lower": 0, "missing": 0}
    for item, want in offline.items():
        got = norms.get(item)
        if got is None:
            out["missing"] += 1
        elif abs(got - want) <= 1e-9 * max(want, 1.0):
            out["equal"] += 1
        else:
            out["higher" if got > want else "lower"] += 1
    return out


def _replay(stack: PrivateStack, work: Path, args: argparse.Namespace, kills: int, db: int):
    """One replay of the same events, with ``kills`` worker SIGKILLs spread over it."""
    name = "replay-kill" if kills else "replay-clean"
    settings = scenario_settings(stack, name, db, work)
    good, invalid = args.replay_events, args.replay_events // 100
    worker = _ready(settings, work, name)
    producer = produce(
        settings, "--generate", str(good), "--invalid", str(invalid), "--seed", str(args.seed),
        "--rate", str(args.replay_rate),
    )  # fmt: skip
    recoveries = []
    for i in range(kills):
        target = good * (i + 1) // (kills + 1)
        wait_until(
            lambda t=target: worker.check() and counter(settings, "events") >= t,
            900,
            f"{target} events before kill {i + 1}",
        )
        at = counter(settings, "events")
        worker.sigkill_and_restart()
        recoveries.append(
            round(
                wait_until(
                    lambda a=at: worker.check() and counter(settings, "events") > a,
                    600,
                    f"the worker restarted after kill {i + 1} to count again",
                ),
                2,
            )
        )
    finish(producer)
    timing = _settle(settings, worker, good, invalid)
    live = snapshot(settings)
    rebuild_s = _rebuild(settings)
    rebuilt_snapshot = snapshot(settings)
    offline = replayed_norms(good, args.seed)
    result = {
        **exactly_once(settings, good, invalid),
        "item_norms_versus_offline_pass": versus_replay(rebuilt_snapshot["norms"], offline),
        "recovery_s": recoveries,
        **timing,
        "forced_rebuild_s": rebuild_s,
    }
    return {**result, **_close(worker)}, live, rebuilt_snapshot


def scenario_worker_kills(stack: PrivateStack, work: Path, args: argparse.Namespace) -> dict:
    """1. Worker SIGKILLed three times during a replay with 1% malformed messages."""
    clean, clean_live, clean_rebuilt = _replay(stack, work, args, kills=0, db=1)
    faulty, faulty_live, faulty_rebuilt = _replay(stack, work, args, kills=3, db=2)
    return {
        **faulty,
        "fault_free_run": clean,
        "versus_fault_free": {
            "as_served": compare(faulty_live, clean_live),
            "after_rebuild_cache": compare(faulty_rebuilt, clean_rebuilt),
        },
    }


def _outage(
    stack: PrivateStack, settings: Settings, worker: Worker, service: str, appendonly: bool
) -> dict[str, float]:
    """SIGKILL ``service`` mid-stream, restart it after ``OUTAGE_S``; how the worker took it."""
    stack.kill(service)
    time.sleep(OUTAGE_S)
    worker.check()
    restart_s = stack.up(appendonly=appendonly)
    at = counter(settings, "events")
    resumed = wait_until(
        lambda: worker.check() and counter(settings, "events") > at,
        600,
        f"the worker to count again after {service} came back",
    )
    return {
        "outage_s": OUTAGE_S,
        "restart_s": round(restart_s, 2),
        "recovery_s": round(resumed, 2),
    }


def scenario_outage(
    stack: PrivateStack, work: Path, args: argparse.Namespace, service: str, db: int
) -> dict:
    """2 and 3a. ``service`` (kafka, redis) SIGKILLed mid-stream and restarted with its data."""
    name = f"{service}-kill"
    settings = scenario_settings(stack, name, db, work)
    good = args.stream_events
    worker = _ready(settings, work, name)
    producer = produce(
        settings, "--generate", str(good), "--seed", str(args.seed + db),
        "--rate", str(args.stream_rate),
    )  # fmt: skip
    wait_until(
        lambda: worker.check() and counter(settings, "events") >= good * 0.3,
        600,
        f"{name}: 30% of the events counted",
    )
    outage = _outage(stack, settings, worker, service, appendonly=True)
    finish(producer)
    started = time.monotonic()
    timing = _settle(settings, worker, good, 0)
    outage["lag_zero_after_restart_s"] = round(outage["recovery_s"] + time.monotonic() - started, 2)
    return {**exactly_once(settings, good, 0), **outage, **timing, **_close(worker)}


def _cache_sizes(settings: Settings) -> dict[str, int]:
    view = snapshot(settings)
    return {"user_lists": len(view["recs"]), "neighbor_lists": len(view["neighbors"])}


def scenario_redis_empty(stack: PrivateStack, work: Path, args: argparse.Namespace) -> dict:
    """3b. Redis SIGKILLed and restarted empty: the worker rebuilds the cache from its tables;
    the counters start again from zero and must count the events after it exactly."""
    settings = scenario_settings(stack, "redis-empty", 7, work)
    good, after = args.stream_events, max(args.stream_events // 10, 100)
    worker = _ready(settings, work, "redis-empty")
    finish(produce(settings, "--generate", str(good), "--seed", str(args.seed + 7)))
    timing = _settle(settings, worker, good, 0)
    before = _cache_sizes(settings)
    token = redis.Redis.from_url(settings.redis_url).hget(
        CacheKeys(settings.redis_key_prefix).generation, "token"
    )
    stack.kill("redis")
    started = time.monotonic()
    restart_s = stack.up(appendonly=False)  # no append-only file read: it comes back empty
    wait_until(
        lambda: worker.check() and rebuilt(settings, token), 300, "the rebuild of every partition"
    )
    rebuild_s = time.monotonic() - started  # from the restart issued to every partition rebuilt
    rebuilt_sizes = _cache_sizes(settings)
    finish(produce(settings, "--generate", str(after), "--seed", str(args.seed + 70)))
    _settle(settings, worker, after, 0)
    return {
        **exactly_once(settings, after, 0),
        "events_before_the_loss": good,
        "before_the_loss": before,
        "rebuilt": rebuilt_sizes,
        "restart_s": round(restart_s, 2),
        "recovery_s": round(rebuild_s, 2),
        **timing,
        **_close(worker),
    }


def scenario_fuzz(stack: PrivateStack, work: Path, args: argparse.Namespace) -> dict:
    """4. Fuzzed messages mixed with good events: no crash, nothing lost, RSS bounded."""
    from models.events import InvalidEvent
    from stream_app.cli.produce import fuzzed_messages
    from stream_app.worker.live_path import parse_message

    settings = scenario_settings(stack, "fuzz", 3, work)
    good, fuzz, seed = args.fuzz, args.fuzz, args.seed + 3
    valid = 0
    for _, value in fuzzed_messages(fuzz, seed):
        try:
            parse_message(value)
            valid += 1
        except InvalidEvent:
            pass
    worker = _ready(settings, work, "fuzz")
    rss_before = worker.rss_mb()
    args_ = ["--generate", str(good), "--fuzz", str(fuzz), "--seed", str(seed)]
    finish(produce(settings, *args_))
    timing = _settle(settings, worker, good + valid, fuzz - valid)
    rss_after = worker.rss_mb()
    return {
        **exactly_once(settings, good + valid, fuzz - valid),
        "fuzzed": fuzz,
        "fuzzed_valid": valid,
        "rss_mb_before": rss_before,
        "rss_mb_after": rss_after,
        **timing,
        **_close(worker),
    }


SCENARIOS: dict[str, Callable[[PrivateStack, Path, argparse.Namespace], dict]] = {
    "1_worker_sigkill_x3": scenario_worker_kills,
    "4_fuzz": scenario_fuzz,
    "2_broker_sigkill": lambda s, w, a: scenario_outage(s, w, a, "kafka", 5),
    "3a_redis_sigkill_with_data": lambda s, w, a: scenario_outage(s, w, a, "redis", 6),
    "3b_redis_sigkill_empty": scenario_redis_empty,
    "5_model_store_attacks": scenario_model_attacks,
}


def _commit() -> str:
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout

    return git("rev-parse", "HEAD").strip() + (" (dirty)" if git("status", "--porcelain") else "")


def markdown_table(results: dict[str, Any]) -> str:
    """The README's table: one row per scenario."""
    head = (
        "| scenario | events good / bad | counted | dead letters (unique) | lost | duplicated "
        "| duplicate dead letters | crashes | recovery |\n|---|---|---|---|---|---|---|---|---|"
    )
    rows = [head]
    for name, r in results["scenarios"].items():
        if "error" in r:
            rows.append(f"| {name} | failed: {r['error'][:80]} | | | | | | | |")
            continue
        if "counted" not in r:
            rows.append(f"| {name} | {r.get('summary', '')} | | | | | | {r['crashes']} | |")
            continue
        rec = r.get("recovery_s", "-")
        rec = ", ".join(f"{x} s" for x in rec) if isinstance(rec, list) else f"{rec} s"
        rec = "-" if rec == "- s" else rec
        rows.append(
            f"| {name} | {r['events_good']:,} / {r['messages_invalid']:,} | {r['counted']:,} "
            f"| {r['dead_letters']:,} ({r['dead_letters_unique']:,}) | {r['lost_events']} "
            f"| {r['duplicated_events']} | {r['duplicate_dead_letters']} | {r['crashes']} | {rec} |"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replay-events", type=int, default=200_000, help="scenario 1's events")
    parser.add_argument("--replay-rate", type=float, default=5000, help="scenario 1's events/s")
    parser.add_argument("--stream-events", type=int, default=20_000, help="scenarios 2 and 3")
    parser.add_argument("--stream-rate", type=float, default=1000, help="scenarios 2 and 3")
    parser.add_argument("--fuzz", type=int, default=10_000, help="fuzzed and good messages")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--only", help="comma-separated scenario name prefixes (1,2,3a,...)")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/chaos.json")
    args = parser.parse_args(argv)
    chosen = {
        k: f
        for k, f in SCENARIOS.items()
        if not args.only or any(k.startswith(p + "_") for p in args.only.split(","))
    }
    started, load_before = time.monotonic(), os.getloadavg()
    results: dict[str, Any] = {"scenarios": {}}
    with tempfile.TemporaryDirectory(prefix="streamrec-chaos-") as tmp:
        work = Path(tmp)
        stack = PrivateStack(work / "stack")
        try:
            results["stack_start_s"] = round(stack.up(), 2)
            for name, run in chosen.items():
                print(f"chaos: {name} ...", flush=True)
                t0 = time.monotonic()
                try:
                    results["scenarios"][name] = {**run(stack, work, args)}
                except Exception as exc:  # the others still run, and the file says what broke
                    results["scenarios"][name] = {"error": f"{type(exc).__name__}: {exc}"}
                    stack.up()  # a scenario that failed mid-outage leaves a service down
                results["scenarios"][name]["scenario_s"] = round(time.monotonic() - t0, 1)
                print(f"chaos: {name} done in {time.monotonic() - t0:.0f} s", flush=True)
        finally:
            stack.down()
    results = {
        "command": command_line("bench/chaos.py", argv),
        "commit": _commit(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg()},
        "total_s": round(time.monotonic() - started, 1),
        **results,
    }  # fmt: skip
    write_results(args.out, results)
    print(markdown_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
