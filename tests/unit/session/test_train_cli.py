"""The ``streamrec train-session`` command end to end on a tiny synthetic stream (no Kafka)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.session.artifacts import list_versions, load_session_model
from models.session.train_cli import parse_duration
from stream_app.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def test_train_session_writes_results_chart_and_a_loadable_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STREAMREC_KAFKA_BOOTSTRAP", raising=False)
    out = tmp_path / "results.json"
    code = main(
        [
            "train-session",
            "--dataset", "synthetic",
            "--synthetic-events", "2000",
            "--protocol", "session",
            "--epochs", "1",
            "--min-updates", "0",
            "--embedding-dim", "8",
            "--hidden-units", "8",
            "--negatives", "32",
            "--out", str(out),
            "--store", str(tmp_path / "store"),
            "--no-progress",
        ]
    )  # fmt: skip
    assert code == 0
    results = json.loads(out.read_text())
    assert results["dataset"] == "synthetic" and results["protocol"] == "session"
    gate = {"gru", "pop", "session_pop", "item_knn", "markov"}
    assert set(results["models"]) == gate | {"session_knn", "session_blend"}
    for metrics in results["models"].values():
        assert {"recall@20", "mrr@20", "recall@10", "mrr@10", "ndcg@10"} <= set(metrics)
    assert results["train_seconds"] > 0 and results["gru"]["updates"] > 0
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (version,) = list_versions(tmp_path / "store")
    assert results["artifact"]["version"] == version.name
    model = load_session_model(version)
    assert model.manifest["metrics"] == results["models"]["gru"]
    assert set(model.manifest["baselines"]) == gate - {"gru"}  # the gate's set is unchanged
    assert model.manifest["hyperparameters"]["embedding_dim"] == 8
    assert model.manifest["data"]["events"] == 2000


def test_leave_one_out_without_saving(tmp_path: Path) -> None:
    out = tmp_path / "loo.json"
    code = main(
        [
            "train-session", "--dataset", "synthetic", "--synthetic-events", "1500",
            "--protocol", "leave-one-out", "--epochs", "1", "--min-updates", "0",
            "--embedding-dim", "8", "--hidden-units", "8", "--out", str(out), "--no-save",
            "--publish", "never", "--no-progress",
        ]
    )  # fmt: skip
    assert code == 0
    results = json.loads(out.read_text())
    assert set(results["models"]) == {"gru", "pop", "item_knn", "markov"}
    assert "artifact" not in results


def test_parse_duration_rejects_nonsense() -> None:
    assert parse_duration("2h") == 7200.0
    with pytest.raises(Exception, match="duration"):
        parse_duration("soon")


def test_every_repeats_cycles_and_survives_a_failed_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from models.session import train_cli

    calls: list[int] = []

    def fake_run_once(args: argparse.Namespace, adapters: object = None) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("broker blip")
        return 0

    def fake_sleep(seconds: float) -> None:
        assert 0 <= seconds <= 900
        if len(calls) >= 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_cli, "run_once", fake_run_once)
    monkeypatch.setattr(train_cli.time, "sleep", fake_sleep)
    with pytest.raises(KeyboardInterrupt):
        train_cli.run(argparse.Namespace(every=900.0))
    assert len(calls) == 3  # the failed first cycle did not stop the loop


@pytest.mark.parametrize(
    ("mode", "env", "announces"),
    [
        ("auto", {"STREAMREC_KAFKA_BOOTSTRAP": "kafka:9092"}, True),
        ("auto", {}, False),
        ("always", {}, True),
        ("never", {"STREAMREC_KAFKA_BOOTSTRAP": "kafka:9092"}, False),
    ],
)
def test_the_command_announces_when_publish_says_so(
    monkeypatch: pytest.MonkeyPatch, mode: str, env: dict[str, str], announces: bool
) -> None:
    import argparse

    from stream_app.cli.train_session import adapters
    from stream_app.settings import Settings

    monkeypatch.delenv("STREAMREC_KAFKA_BOOTSTRAP", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    wired = adapters(argparse.Namespace(settings=Settings(), publish=mode, kafka_timeout_s=1.0))
    assert (wired.announce is not None) is announces
    assert wired.read_topic is not None  # the kafka dataset is always readable from the command


def test_the_kafka_dataset_needs_a_topic_reader() -> None:
    import argparse

    from models.session import train_cli

    with pytest.raises(ValueError, match="topic reader"):
        train_cli._load_events(argparse.Namespace(dataset="kafka"), None)


def test_too_few_events_look_again_after_the_poll_not_the_period(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import argparse

    from models.session import train_cli
    from stream_app.settings import Settings

    codes = iter([train_cli.TOO_FEW_EVENTS, train_cli.TOO_FEW_EVENTS, 0, 0])
    slept: list[float] = []
    monkeypatch.setattr(train_cli, "run_once", lambda args, adapters=None: next(codes))
    monkeypatch.setattr(train_cli.time, "monotonic", lambda: 0.0)

    def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_cli.time, "sleep", fake_sleep)
    args = argparse.Namespace(every=900.0, settings=Settings(train_poll_s=5.0))
    with pytest.raises(KeyboardInterrupt):
        train_cli.run(args)
    assert slept == [5.0, 5.0, 900.0, 900.0]
