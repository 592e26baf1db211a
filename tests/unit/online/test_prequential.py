"""The prequential protocol, the baselines by hand, and `streamrec evaluate` end to end."""

from __future__ import annotations

import json

import pytest

from models.datasets import SyntheticConfig, generate_synthetic, write_event_file
from models.evaluation.prequential import prequential
from models.events import Interaction
from models.online.baselines import ItemKNNBaseline, MarkovBaseline, PopularityBaseline
from stream_app.cli import main

T0 = 1_700_000_000_000


def _events(pairs: list[tuple[str, str]]) -> list[Interaction]:
    return [Interaction(u, i, "view", T0 + n * 1000) for n, (u, i) in enumerate(pairs)]


def test_warmup_repeats_and_new_items():
    events = _events([("a", "x"), ("b", "x"), ("a", "x"), ("c", "x"), ("c", "new")])
    out = prequential(events, {"pop": PopularityBaseline()}, warmup=0.4)
    protocol = out["protocol"]
    assert protocol["warmup_events"] == 2
    assert protocol["repeats_not_scored"] == 1  # a -> x again
    assert protocol["scored_events"] == 2  # c -> x (hit at 1), c -> new (unseen: a miss)
    assert out["models"]["pop"]["hit_rate@10"] == 0.5
    assert out["models"]["pop"]["mrr@10"] == 0.5
    assert out["models"]["pop"]["coverage@10"] == 0.5  # x of {x, new}


def test_markov_baseline_by_hand():
    m = MarkovBaseline()
    for e in _events([("a", "x"), ("a", "y"), ("b", "x"), ("b", "z"), ("c", "x"), ("c", "y")]):
        m.learn_one(e)
    assert m.rank("d", 3) == ["x", "y", "z"]  # no previous item: popularity
    m.learn_one(Interaction("d", "x", "view", T0 + 10_000))
    assert m.rank("d", 2) == ["y", "z"]  # x -> y twice, x -> z once; x is consumed


def test_itemknn_baseline_by_hand():
    m = ItemKNNBaseline(recent=20)
    for e in _events([("a", "x"), ("a", "y"), ("b", "x"), ("b", "y"), ("c", "x"), ("c", "z")]):
        m.learn_one(e)
    m.learn_one(Interaction("d", "x", "view", T0 + 10_000))
    # x now has 4 users: cos(x, y) = 2 / sqrt(4 * 2) > cos(x, z) = 1 / sqrt(4 * 1).
    assert m.rank("d", 2) == ["y", "z"]
    scores = m._scores("d", len(m.vocab), None)
    assert scores[m.vocab.get("y")] == pytest.approx(2 / 8**0.5)
    assert scores[m.vocab.get("z")] == pytest.approx(0.5)


def test_evaluate_command_writes_json_and_plot(tmp_path):
    ds = generate_synthetic(
        SyntheticConfig(n_users=40, n_items=60, n_clusters=4, n_events=1_500, seed=2)
    )
    path = tmp_path / "events.jsonl"
    write_event_file(ds.events, path)
    out = tmp_path / "result.json"
    assert main(["evaluate", "--dataset", str(path), "--variants", "", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result) >= {"dataset", "protocol", "models"}
    expected = {"streamrec", "popularity", "decayed_popularity", "itemknn", "markov"}
    assert expected <= set(result["models"])
    for metrics in result["models"].values():
        assert {"hit_rate@10", "mrr@10", "coverage@10", "events_per_s"} <= set(metrics)
        assert 0.0 <= metrics["mrr@10"] <= metrics["hit_rate@10"] <= 1.0
    assert (
        result["models"]["streamrec"]["hit_rate@10"] > result["models"]["popularity"]["hit_rate@10"]
    )
    assert out.with_suffix(".png").stat().st_size > 1_000


def test_evaluate_on_synthetic_reports_the_oracle_as_a_reference(tmp_path):
    out = tmp_path / "synthetic.json"
    argv = ["evaluate", "--dataset", "synthetic", "--synthetic-events", "2000", "--variants", ""]
    assert main([*argv, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert "oracle" in result["models"] and "oracle" in result["references"]
    # The oracle is a ceiling, never the baseline streamrec is compared against.
    assert all(row["best_baseline"] != "oracle" for row in result["comparison"].values())
    oracle, markov = result["models"]["oracle"], result["models"]["markov"]
    assert oracle["hit_rate@10"] > markov["hit_rate@10"]
    gain = result["references"]["oracle"]["relative_to_markov"]["hit_rate@10"]
    assert gain == oracle["hit_rate@10"] / markov["hit_rate@10"] - 1.0


def test_the_tuning_part_never_counts_in_the_metrics():
    """With ``tune_fraction``, the metrics are those of a replay that warmed up on the tuning
    part (a model whose ranking changes nothing learns the same either way); the tuning
    trials are reported apart."""
    data = generate_synthetic(
        SyntheticConfig(n_users=40, n_items=60, n_clusters=4, n_events=1500, seed=5)
    )
    models = {"itemknn": ItemKNNBaseline(), "markov": MarkovBaseline()}
    tuned = prequential(data.events, models, warmup=0.1, tune_fraction=0.4)
    fresh = {"itemknn": ItemKNNBaseline(), "markov": MarkovBaseline()}
    held = prequential(data.events, fresh, warmup=0.4)
    for name in models:
        for metric in ("hit_rate@10", "mrr@10"):
            assert tuned["models"][name][metric] == held["models"][name][metric]
        assert "tune_hit_rate@10" in tuned["models"][name]
    assert tuned["protocol"]["scored_events"] == held["protocol"]["scored_events"]
    assert tuned["protocol"]["tune_events_scored"] > 0
    assert tuned["models"]["markov"]["tune_hit_rate@10"] != held["models"]["markov"]["hit_rate@10"]
