"""How long `infra/stack.sh` takes: cold start, first start, warm restart, no-op `up`, `down`.

Runs the real script on free ports with throw-away state and cache directories, so it neither
touches nor depends on a stack that is already up. "Cold" also gives Maven an empty local
repository, so it includes downloading Kafka and the Maven plugin from Maven Central (pass
``--keep-maven-repo`` to use ~/.m2 instead). The JVM's own start (`java -version`) is measured in
the same run as the floor the numbers should be read against.

    .venv/bin/python infra/bench_start.py --out bench/results/stack_start.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "infra/stack.sh"


def free_ports(count: int) -> list[int]:
    """``count`` free ports, the first followed by a free one (Kafka's controller port)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            base = int(sock.getsockname()[1])
        if base + 1 >= 65535:
            continue
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", base + 1))
                b.bind(("127.0.0.1", 0))
                other = int(b.getsockname()[1])
                if other != base:
                    return [base, other][:count]
        except OSError:
            continue


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 3):
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return elapsed, done.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/stack_start.json")
    parser.add_argument("--repeats", type=int, default=3, help="warm restarts / no-op ups")
    parser.add_argument("--keep-maven-repo", action="store_true", help="cold = ~/.m2 as it is")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="streamrec-bench-start-"))
    kafka_port, redis_port = free_ports(2)
    env = {
        **os.environ,
        "KAFKA_PORT": str(kafka_port),
        "REDIS_PORT": str(redis_port),
        "STREAMREC_STATE_DIR": str(work / "state"),
        "XDG_CACHE_HOME": str(work / "cache"),
        "PY": sys.executable,
    }
    env.pop("KAFKA_CONTROLLER_PORT", None)
    if not args.keep_maven_repo:
        wrapper = work / "mvn"
        mvn = shutil.which("mvn") or "mvn"
        wrapper.write_text(f'#!/bin/sh\nexec {mvn} -Dmaven.repo.local={work}/m2 "$@"\n')
        wrapper.chmod(0o755)
        env["MVN"] = str(wrapper)

    def stack(command: str, state: str = "state") -> tuple[float, str]:
        return timed(
            ["bash", str(SCRIPT), command], {**env, "STREAMREC_STATE_DIR": str(work / state)}
        )

    results: dict[str, object] = {}
    try:
        results["java_version_s"] = round(timed(["java", "-version"], env)[0], 3)
        cold, out = stack("up")
        assert "resolving Kafka" in out, out
        results["cold_up_s"] = round(cold, 2)
        stack("down")
        shutil.rmtree(work / "state")
        first, out = stack("up", "state2")
        assert "formatting Kafka storage" in out and "resolving" not in out, out
        results["first_up_jars_cached_s"] = round(first, 2)
        warm, noop, down = [], [], []
        for _ in range(args.repeats):
            down.append(stack("down", "state2")[0])
            elapsed, out = stack("up", "state2")
            assert "starting Kafka" in out and "formatting" not in out, out
            warm.append(elapsed)
            elapsed, out = stack("up", "state2")
            assert "kafka already up" in out and "redis already up" in out, out
            noop.append(elapsed)
        status_s, out = stack("status", "state2")
        assert "kafka: up" in out and "redis: up" in out, out
        results.update(
            warm_up_s=[round(x, 2) for x in warm],
            warm_up_median_s=round(statistics.median(warm), 2),
            noop_up_s=[round(x, 2) for x in noop],
            noop_up_median_s=round(statistics.median(noop), 2),
            down_s=[round(x, 2) for x in down],
            status_s=round(status_s, 2),
        )
    finally:
        subprocess.run(
            ["bash", str(SCRIPT), "down"],
            env={**env, "STREAMREC_STATE_DIR": str(work / "state2")},
            capture_output=True,
            check=False,
        )
        shutil.rmtree(work, ignore_errors=True)

    results["setup"] = {
        "maven_repo": "~/.m2 as it was" if args.keep_maven_repo else "empty (downloads)",
        "cpus": os.cpu_count(),
        "loadavg_at_end": os.getloadavg(),
        "python": platform.python_version(),
        "command": "python infra/bench_start.py " + " ".join(argv or sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
