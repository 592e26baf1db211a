"""Wait until Kafka answers a metadata request and Redis answers PING; used by ``infra/stack.sh``.

Why a probe and not "the port is open": a KRaft broker accepts TCP connections seconds before it
has registered itself with its controller, and a client connecting in that window gets an empty
broker list and fails in confusing ways. We call it ready once ``DescribeCluster`` lists at least
one broker. Redis is ready when PING returns, which also tells a Redis apart from whatever other
process might hold the port.

Usage (exit 0 when every named service is ready within the timeout, 1 otherwise)::

    python infra/wait_ready.py --kafka 127.0.0.1:9092 --redis redis://127.0.0.1:6379/0 --timeout 120
    python infra/wait_ready.py --kafka 127.0.0.1:9092 --timeout 0     # one attempt, no waiting
    python infra/wait_ready.py --kafka 127.0.0.1:19092 --brokers 3    # every broker registered
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence

#: A probe returns None when the service is ready, else a one-line reason.
Probe = Callable[[float], str | None]

#: Longest single attempt; a probe never blocks longer than this even with a long overall timeout,
#: so that a broker that comes up mid-attempt is noticed within a few seconds.
ATTEMPT_S = 3.0


def kafka_probe(bootstrap: str, brokers: int = 1) -> Probe:
    """A probe that asks the cluster for its brokers (DescribeCluster, metadata on old brokers);
    ready once it lists ``brokers`` of them (a replicated cluster is usable only when every
    broker has registered: topics with a replication factor of 3 cannot be created before)."""

    def probe(budget_s: float) -> str | None:
        from kafka.admin import (
            KafkaAdminClient,
        )  # imported late: `--redis` alone should not pay for it

        ms = max(int(budget_s * 1000), 500)
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=bootstrap.split(","),
                client_id="streamrec-wait-ready",
                bootstrap_timeout_ms=ms,
                request_timeout_ms=ms,
            )
        except Exception as exc:
            return f"no Kafka broker answers at {bootstrap} ({type(exc).__name__}: {exc})"
        try:
            cluster = admin.describe_cluster()
        except Exception as exc:
            return f"Kafka at {bootstrap} did not describe its cluster ({type(exc).__name__})"
        finally:
            admin.close()
        listed = len(cluster.get("brokers") or [])
        if not listed:
            return f"Kafka at {bootstrap} answers but lists no registered broker yet"
        if listed < brokers:
            return f"Kafka at {bootstrap} lists {listed} of {brokers} brokers"
        return None

    return probe


def redis_probe(url: str) -> Probe:
    """A probe that sends PING to the Redis at ``url``."""

    def probe(budget_s: float) -> str | None:
        import redis

        budget = max(budget_s, 0.5)
        client = redis.Redis.from_url(url, socket_connect_timeout=budget, socket_timeout=budget)
        try:
            if client.ping():
                return None
            return f"Redis at {url} did not answer PING"
        except Exception as exc:
            return f"no Redis answers PING at {url} ({type(exc).__name__}: {exc})"
        finally:
            client.close()

    return probe


def process_gone(pid: int) -> str | None:
    """None while process ``pid`` runs, else why not; a zombie counts as gone (it never answers)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return f"process {pid} exited"
    # The state letter follows the command name, which is in parentheses and may hold spaces.
    state = stat.rpartition(")")[2].split()[:1]
    return f"process {pid} exited" if state == ["Z"] else None


def wait_all(
    probes: Mapping[str, Probe],
    timeout_s: float,
    *,
    give_up: Callable[[], str | None] = lambda: None,
    interval_s: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, str]:
    """Run each probe until it passes or ``timeout_s`` is spent; return the reasons of those left.

    Every probe gets at least one attempt, even with ``timeout_s=0``. A probe that passed is not
    asked again. ``give_up`` is asked between rounds; a reason from it ends the wait at once (the
    process we wait for died: waiting out the timeout would only delay the error).

    Examples:
        >>> ticks = iter(range(100))
        >>> answers = {"kafka": iter(["starting", "starting", None])}
        >>> probes = {"kafka": lambda budget: next(answers["kafka"])}
        >>> wait_all(probes, 10, clock=lambda: next(ticks), sleep=lambda s: None)
        {}
        >>> wait_all({"redis": lambda budget: "refused"}, 0)
        {'redis': 'refused'}
    """
    deadline = clock() + timeout_s
    pending = dict(probes)
    reasons: dict[str, str] = {}
    while True:
        for name, probe in list(pending.items()):
            budget = min(ATTEMPT_S, max(deadline - clock(), 0.0))
            reason = probe(budget)
            if reason is None:
                del pending[name]
                reasons.pop(name, None)
            else:
                reasons[name] = reason
        if not pending or clock() >= deadline:
            return reasons
        stop = give_up()
        if stop is not None:
            return {name: f"{reasons[name]}; {stop}" for name in pending}
        sleep(min(interval_s, max(deadline - clock(), 0.0)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kafka", metavar="HOST:PORT[,...]", help="Kafka bootstrap servers")
    parser.add_argument(
        "--brokers", type=int, default=1, help="Kafka is ready once it lists this many brokers"
    )
    parser.add_argument("--redis", metavar="URL", help="Redis URL, e.g. redis://127.0.0.1:6379/0")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds (0 = one attempt)")
    parser.add_argument("--pid", type=int, help="stop waiting as soon as this process exits")
    parser.add_argument("--quiet", action="store_true", help="print nothing, only set the status")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    probes: dict[str, Probe] = {}
    if args.kafka:
        probes["kafka"] = kafka_probe(args.kafka, args.brokers)
    if args.redis:
        probes["redis"] = redis_probe(args.redis)
    if not probes:
        build_parser().error("name at least one of --kafka, --redis")
    # kafka-python logs every refused connection at ERROR; while waiting for a broker that is
    # still starting, refusals are expected, and the reason we print is the useful summary.
    logging.getLogger("kafka").addHandler(logging.NullHandler())
    logging.getLogger("kafka").propagate = False
    pid = args.pid
    started = time.monotonic()
    failed = wait_all(
        probes, args.timeout, give_up=(lambda: process_gone(pid)) if pid else lambda: None
    )
    if not args.quiet:
        for name, reason in sorted(failed.items()):
            waited = time.monotonic() - started
            print(f"{name}: not ready after {waited:.0f} s: {reason}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
