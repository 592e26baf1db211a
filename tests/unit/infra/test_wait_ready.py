"""infra/wait_ready.py: the waiting logic on a fake clock, and the probes against closed ports."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wait_ready", ROOT / "infra/wait_ready.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


wait_ready = _load()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_waits_until_every_probe_passes_and_asks_a_passed_probe_no_more() -> None:
    clock = FakeClock()
    calls = {"kafka": 0, "redis": 0}

    def kafka(budget: float) -> str | None:
        calls["kafka"] += 1
        return None if clock.now >= 2.0 else "starting"

    def redis(budget: float) -> str | None:
        calls["redis"] += 1
        return None

    failed = wait_ready.wait_all(
        {"kafka": kafka, "redis": redis}, 10, clock=clock, sleep=clock.sleep, interval_s=0.5
    )
    assert failed == {}
    assert calls["redis"] == 1
    assert calls["kafka"] == 5  # t = 0, 0.5, 1.0, 1.5, 2.0


def test_reports_the_last_reason_after_the_timeout() -> None:
    clock = FakeClock()
    reasons = iter(f"attempt {i}" for i in range(1000))
    failed = wait_ready.wait_all(
        {"kafka": lambda budget: next(reasons)}, 3, clock=clock, sleep=clock.sleep
    )
    assert failed == {"kafka": "attempt 6"}  # 7 attempts: t = 0 .. 3 every 0.5 s
    assert clock.now == pytest.approx(3.0)


def test_no_attempt_is_given_more_than_the_time_left() -> None:
    clock = FakeClock()
    budgets: list[float] = []

    def probe(budget: float) -> str:
        budgets.append(budget)
        return "no"

    wait_ready.wait_all({"x": probe}, 4.2, clock=clock, sleep=clock.sleep, interval_s=1.0)
    assert budgets[0] == wait_ready.ATTEMPT_S
    assert budgets[-1] == pytest.approx(0.0)
    assert all(b <= wait_ready.ATTEMPT_S for b in budgets)


def test_give_up_ends_the_wait_at_once() -> None:
    clock = FakeClock()
    failed = wait_ready.wait_all(
        {"kafka": lambda budget: "refused"},
        120,
        clock=clock,
        sleep=clock.sleep,
        give_up=lambda: "process 42 exited",
    )
    assert failed == {"kafka": "refused; process 42 exited"}
    assert clock.slept == []


def test_process_gone() -> None:
    assert wait_ready.process_gone(os.getpid()) is None
    child = subprocess.Popen(["true"])
    child.wait()
    assert wait_ready.process_gone(child.pid) == f"process {child.pid} exited"


def test_process_gone_counts_a_zombie_as_gone() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert wait_ready.process_gone(child.pid) is None
        child.terminate()
        # Wait for the exit without reaping it: the child stays a zombie until child.wait().
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
        assert wait_ready.process_gone(child.pid) == f"process {child.pid} exited"
    finally:
        child.kill()
        child.wait()


def test_kafka_probe_on_a_closed_port_names_the_address() -> None:
    address = f"127.0.0.1:{closed_port()}"
    reason = wait_ready.kafka_probe(address)(0.5)
    assert reason is not None and address in reason


def test_redis_probe_on_a_closed_port_names_the_url() -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    reason = wait_ready.redis_probe(url)(0.5)
    assert reason is not None and url in reason


def test_main_exit_status_and_message(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    assert wait_ready.main(["--redis", url, "--timeout", "0"]) == 1
    assert "redis: not ready after 0 s" in capsys.readouterr().err
    assert wait_ready.main(["--redis", url, "--timeout", "0", "--quiet"]) == 1
    assert capsys.readouterr().err == ""


def test_main_needs_a_service() -> None:
    with pytest.raises(SystemExit) as exc:
        wait_ready.main(["--timeout", "1"])
    assert exc.value.code == 2
