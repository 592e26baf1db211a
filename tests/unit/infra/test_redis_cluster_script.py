"""infra/redis_cluster.sh without starting anything: its one-line refusals and its URL."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "infra/redis_cluster.sh"


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("port", ["abc", "0", "65533", "7100x"])
def test_a_bad_first_port_is_refused_in_one_line_naming_the_variable(port, tmp_path):
    done = run("up", REDIS_CLUSTER_PORT=port, STREAMREC_STATE_DIR=str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.startswith(f"redis-cluster: error: REDIS_CLUSTER_PORT={port}")
    assert not list(tmp_path.iterdir())  # nothing started, nothing written


def test_the_url_names_the_first_node_and_a_bad_verb_shows_the_usage():
    assert run("url", REDIS_CLUSTER_PORT="7300").stdout.strip() == "redis+cluster://127.0.0.1:7300"
    done = run("restart")
    assert done.returncode == 1 and "usage: bash infra/redis_cluster.sh up | down" in done.stderr
