"""Every listening socket of the stack (Kafka, Redis), a worker (Faust's web server) and the read
API binds a loopback address by default (issue 20, security posture): nothing of ours is
reachable from another machine unless a user configures it. The sockets are read from
``/proc/net/tcp{,6}`` through each process's file descriptors, as ``ss -ltnp`` does."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream_app.settings import Settings

pytestmark = pytest.mark.integration

LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp


def _address(hex_ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``/proc/net/tcp`` addresses are the kernel's words in host (little-endian) order."""
    raw = bytes.fromhex(hex_ip)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(words)


def listening(pid: int) -> set[tuple[str, int]]:
    """``(address, port)`` of every socket process ``pid`` listens on (TCP, v4 and v6)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == LISTEN and fields[9] in inodes:
                hex_ip, hex_port = fields[1].split(":")
                found.add((str(_address(hex_ip)), int(hex_port, 16)))
    return found


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1, or an IPv4-mapped loopback (Java's listeners show as ::ffff:127.0.0.1).

    >>> [is_loopback(a) for a in ("127.0.0.1", "::ffff:127.0.0.1", "0.0.0.0", "::")]
    [True, True, False, False]
    """
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def _stack_pid(name: str) -> int:
    state = Settings.from_env().state_path
    return int((state / name / f"{name}.pid").read_text().strip())


def test_the_stack_the_worker_and_the_api_listen_on_loopback_only(
    settings, start_worker, wait_for, env_for
):
    worker = start_worker(settings)
    port = settings.web_port + 1
    api = subprocess.Popen(
        [sys.executable, "-m", "stream_app.cli", "api", "--port", str(port)],
        env=env_for(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        processes = {
            "kafka": _stack_pid("kafka"),
            "redis": _stack_pid("redis"),
            "worker": worker.proc.pid,
            "api": api.pid,
        }
        wait_for(
            lambda: all(listening(pid) for pid in processes.values()),
            90,
            "every process to listen",
            lambda: f"{ {n: listening(p) for n, p in processes.items()} }\n{worker.log_tail()}",
        )
        time.sleep(1)  # a late second listener (e.g. the broker's controller) shows too
        sockets = {name: listening(pid) for name, pid in processes.items()}
        exposed = {n: [s for s in found if not is_loopback(s[0])] for n, found in sockets.items()}
        assert not any(exposed.values()), exposed
        assert (settings.web_host, settings.web_port) in sockets["worker"], sockets["worker"]
        assert any(p == port for _, p in sockets["api"]), sockets["api"]
    finally:
        api.terminate()
        api.wait(10)
