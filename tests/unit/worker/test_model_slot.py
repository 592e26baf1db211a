"""The hot-swap slot's decisions with a fake loader: gate rules, refusals, swap atomicity, async."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from models.session.artifacts import manifest_metrics
from models.session.gate import GatePolicy, quality_gate
from stream_app.worker.model_slot import ModelSlot, newest_in_store


class ArtifactRejected(RuntimeError):
    """Stands in for models.session.artifacts.ArtifactRejected (same ``reason`` attribute)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def manifest(version: str, recall: float, mrr: float, baselines: Any = "default") -> dict:
    if baselines == "default":
        baselines = {"pop": {"recall@20": 0.05, "mrr@20": 0.01}}
    m: dict[str, Any] = {
        "version": version,
        "metrics": {"test": {"recall@20": recall, "mrr@20": mrr}},
    }
    if baselines is not None:
        m["metrics"]["baselines"] = baselines
    return m


class FakeModel:
    def __init__(self, manifest: dict) -> None:
        self.manifest = manifest


class FakeLoader:
    def __init__(self) -> None:
        self.models: dict[str, Any] = {}
        self.calls: list[str] = []

    def add(self, version: str, recall: float = 0.3, mrr: float = 0.1, **kw: Any) -> str:
        path = f"/store/{version}"
        self.models[path] = FakeModel(manifest(version, recall, mrr, **kw))
        return path

    def broken(self, version: str, reason: str) -> str:
        path = f"/store/{version}"
        self.models[path] = ArtifactRejected(reason)
        return path

    def __call__(self, path: Path) -> Any:
        self.calls.append(str(path))
        found = self.models[str(path)]
        if isinstance(found, Exception):
            raise found
        return found


def test_gate_tolerance_boundary_is_inclusive() -> None:
    # binary-exact numbers: 0.5 * 0.75 = 0.375 and 0.25 * 0.75 = 0.1875 with no rounding
    serving = manifest("v1", 0.5, 0.25)
    policy = GatePolicy(tolerance=0.25)
    assert quality_gate(manifest("v2", 0.375, 0.1875), serving, policy) is None  # exactly 25 % down
    reason = quality_gate(manifest("v2", 0.3749, 0.25), serving, policy)
    assert reason is not None and reason.startswith("recall@20")


def test_gate_requires_beating_every_baseline_strictly() -> None:
    baselines = {"markov": {"recall@20": 0.2, "mrr@20": 0.1}, "pop": {"recall@20": 0.1}}
    reason = quality_gate(manifest("v", 0.3, 0.1, baselines=baselines), None)
    assert reason == "mrr@20 0.1 does not beat baseline markov (0.1)"
    assert quality_gate(manifest("v", 0.3, 0.11, baselines=baselines), None) is None


def test_gate_refuses_missing_metrics_and_missing_baselines() -> None:
    assert quality_gate({"metrics": {"test": {"recall@20": 0.3}}}, None) == (
        "manifest has no finite test mrr@20"
    )
    assert quality_gate({}, None) == "manifest has no finite test recall@20, mrr@20"
    no_baselines = manifest("v", 0.3, 0.1, baselines=None)
    assert quality_gate(no_baselines, None) == "manifest records no baselines to beat"
    assert quality_gate(no_baselines, None, GatePolicy(require_baselines=False)) is None


def test_gate_ignores_non_finite_and_boolean_metric_values() -> None:
    test, _ = manifest_metrics({"metrics": {"test": {"recall@20": float("nan"), "mrr@20": True}}})
    assert test == {}


def test_first_offer_swaps_in_and_worse_one_is_refused_while_serving_continues() -> None:
    loader = FakeLoader()
    slot = ModelSlot(loader=loader, clock=lambda: 1.0)
    assert slot.current() is None
    first = slot.offer(loader.add("v1", 0.30, 0.10))
    assert first.accepted and slot.version == "v1"
    serving = slot.current()
    worse = slot.offer(loader.add("v2", 0.20, 0.10))
    assert not worse.accepted and "quality gate: recall@20" in worse.reason
    assert slot.current() is serving and slot.version == "v1"
    better = slot.offer(loader.add("v3", 0.31, 0.11))
    assert better.accepted and better.reason == "swapped in, replacing v1"
    assert slot.version == "v3"
    assert [d.version for d in slot.history] == ["v1", "v2", "v3"]
    assert set(slot.refused) == {"v2"} and slot.refused["v2"].at_ms == 1000


def test_rejected_artifact_is_refused_with_its_reason_and_not_reloaded() -> None:
    loader = FakeLoader()
    slot = ModelSlot(loader=loader)
    slot.offer(loader.add("v1"))
    bad = loader.broken("v2", "hash mismatch for model.keras (file changed or corrupted)")
    decision = slot.offer(bad)
    assert not decision.accepted
    assert (
        decision.reason == "load failed: hash mismatch for model.keras (file changed or corrupted)"
    )
    assert slot.version == "v1"
    again = slot.offer(bad)
    assert again is decision
    assert loader.calls.count(bad) == 1


def test_any_loader_exception_is_a_refusal_not_a_crash() -> None:
    def loader(path: Path) -> Any:
        raise OSError("disk gone")

    decision = ModelSlot(loader=loader).offer("/store/v9")
    assert not decision.accepted and decision.reason == "load failed: OSError: disk gone"


def test_offering_the_serving_version_again_is_a_no_op() -> None:
    loader = FakeLoader()
    slot = ModelSlot(loader=loader)
    path = loader.add("v1")
    slot.offer(path)
    decision = slot.offer(path)
    assert not decision.accepted and decision.reason == "already serving"
    assert loader.calls == [path]
    assert slot.refused == {}


def test_newest_in_store_and_offer_newest(tmp_path: Path) -> None:
    for name in ("20260101T000000Z-aaaa", "20260301T000000Z-cccc", "20260201T000000Z-bbbb"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text("{}")
    (tmp_path / "20270101T000000Z-nomanifest").mkdir()
    (tmp_path / ".incoming-123").mkdir()
    (tmp_path / ".incoming-123" / "manifest.json").write_text("{}")
    assert newest_in_store(tmp_path) == tmp_path / "20260301T000000Z-cccc"

    loaded: list[str] = []

    def loader(path: Path) -> Any:
        loaded.append(path.name)
        return FakeModel(manifest(path.name, 0.3, 0.1))

    slot = ModelSlot(loader=loader)
    decision = slot.offer_newest(tmp_path)
    assert decision is not None and decision.accepted
    assert slot.offer_newest(tmp_path) is None  # already serving: not reloaded
    assert loaded == ["20260301T000000Z-cccc"]
    assert newest_in_store(tmp_path / "absent") is None


def test_offer_async_runs_the_load_off_the_event_loop_thread() -> None:
    loop_thread: list[int] = []
    load_thread: list[int] = []

    def loader(path: Path) -> Any:
        load_thread.append(threading.get_ident())
        return FakeModel(manifest("v1", 0.3, 0.1))

    slot = ModelSlot(loader=loader, store="/store")

    async def main() -> Any:
        loop_thread.append(threading.get_ident())
        return await slot.offer_async("/store/v1")

    decision = asyncio.run(main())
    assert decision.accepted and slot.version == "v1"
    assert load_thread[0] != loop_thread[0]


def test_a_batch_keeps_the_model_it_started_with_across_a_swap() -> None:
    loader = FakeLoader()
    slot = ModelSlot(loader=loader)
    slot.offer(loader.add("v1", 0.3, 0.1))
    in_batch = slot.current()  # the worker takes the model once at batch start
    slot.offer(loader.add("v2", 0.4, 0.2))  # a swap lands mid-batch
    assert in_batch.manifest["version"] == "v1"
    assert slot.current().manifest["version"] == "v2"


def test_policy_validates_tolerance() -> None:
    with pytest.raises(ValueError):
        GatePolicy(tolerance=1.5)


def test_every_decision_made_is_told_once_and_a_failing_listener_costs_nothing() -> None:
    told: list[tuple[str, bool]] = []
    loader = FakeLoader()
    slot = ModelSlot(loader=loader, on_decision=lambda d: told.append((d.version, d.accepted)))
    v1 = slot.offer(loader.add("v1", 0.30, 0.10))
    slot.offer(loader.add("v2", 0.20, 0.10))
    slot.offer("/store/v2")  # refused before: the same decision, not a new one
    slot.offer("/store/v1")  # already serving: no decision
    assert v1.accepted and told == [("v1", True), ("v2", False)]

    def broken(_decision: Any) -> None:
        raise RuntimeError("journal down")

    slot.on_decision = broken
    assert slot.offer(loader.add("v3", 0.31, 0.11)).accepted and slot.version == "v3"


def test_a_path_outside_the_store_is_refused_before_the_loader_runs(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / "20260101T000000Z-good").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (store / "20260201T000000Z-link").symlink_to(tmp_path / "elsewhere")
    (store / ".incoming-x").mkdir()
    loaded: list[str] = []

    def loader(path: Path) -> Any:
        loaded.append(str(path))
        return FakeModel(manifest(path.name, 0.3, 0.1))

    told: list[str] = []
    slot = ModelSlot(loader=loader, store=store, on_decision=lambda d: told.append(d.reason))
    assert slot.offer(store / "20260101T000000Z-good").accepted
    attacks = {
        "../../etc": "path traversal: '../../etc' has a '..' component",
        f"{store}/../elsewhere": "has a '..' component",
        "/etc": f"/etc is outside the model store {store}",
        str(tmp_path / "elsewhere"): "is outside the model store",
        str(store / "20260201T000000Z-link"): "20260201T000000Z-link is a symbolic link",
        str(store / ".incoming-x"): ".incoming-x is hidden",
        str(store / "20260101T000000Z-good" / "manifest.json"): "is outside the model store",
    }
    for path, reason in attacks.items():
        decision = slot.offer(path, trigger="update")
        assert not decision.accepted and decision.reason.startswith("refused unopened: ")
        assert reason in decision.reason, (path, decision.reason)
    assert loaded == [str(store / "20260101T000000Z-good")]  # nothing else was opened
    assert slot.version == "20260101T000000Z-good"
    assert len(told) == 1 + len(attacks)  # every refusal reaches the journal
    assert slot.refused == {}  # a verdict on a path, not on a version name: not remembered


def test_a_slot_without_a_store_refuses_message_paths_until_it_polls_one(tmp_path: Path) -> None:
    (tmp_path / "20260101T000000Z-aaaa").mkdir()
    (tmp_path / "20260101T000000Z-aaaa" / "manifest.json").write_text("{}")
    slot = ModelSlot(loader=lambda p: FakeModel(manifest(p.name, 0.3, 0.1)))
    early = slot.offer(tmp_path / "20260101T000000Z-aaaa", trigger="update")
    assert not early.accepted and "no model store known yet" in early.reason
    assert slot.offer_newest(tmp_path) is not None and slot.store == tmp_path  # bound at start
    assert slot.version == "20260101T000000Z-aaaa"
    assert "outside the model store" in slot.offer("/tmp/x", trigger="update").reason


def _versions(root: Path, *specs: tuple[str, float]) -> dict[str, float]:
    """Version directories in ``root``, each with the MRR@20 its fake model claims."""
    for name, _ in specs:
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "manifest.json").write_text("{}")
    return dict(specs)


def _slot(root: Path, mrrs: dict[str, float], loaded: list[str]) -> ModelSlot:
    def loader(path: Path) -> Any:
        loaded.append(path.name)
        if mrrs[path.name] < 0:
            raise ArtifactRejected("hash mismatch for model.keras")
        return FakeModel(manifest(path.name, 0.3, mrrs[path.name]))

    return ModelSlot(loader=loader, store=root)


def test_refusals_persist_and_a_restarted_slot_falls_back_to_the_last_accepted(
    tmp_path: Path,
) -> None:
    from models.session.store import read_ledger

    mrrs = _versions(tmp_path, ("20260101T000000Z-a", 0.10), ("20260102T000000Z-b", -1.0))
    loaded: list[str] = []
    first = _slot(tmp_path, mrrs, loaded)
    first.offer(tmp_path / "20260101T000000Z-a")
    decision = first.offer_newest(tmp_path)
    assert decision is not None and not decision.accepted  # b is damaged: refused
    assert first.version == "20260101T000000Z-a"  # a keeps serving
    ledger = read_ledger(tmp_path)
    assert set(ledger.refused) == {"20260102T000000Z-b"} and ledger.serving == first.version

    loaded.clear()
    restarted = _slot(tmp_path, mrrs, loaded)
    restarted.offer_newest(tmp_path, trigger="start")
    assert restarted.version == "20260101T000000Z-a"
    assert loaded == ["20260101T000000Z-a"]  # the refused version is never loaded again


def test_a_fallback_is_not_gated_against_the_version_it_replaces(tmp_path: Path) -> None:
    from models.session.store import ROLLBACK_REASON, Verdict, update_ledger

    mrrs = _versions(tmp_path, ("20260101T000000Z-a", 0.10), ("20260102T000000Z-b", 0.20))
    slot = _slot(tmp_path, mrrs, [])
    slot.offer_newest(tmp_path)  # nothing accepted yet: the newest, through the gate
    assert slot.version == "20260102T000000Z-b"
    # an older version accepted before, then the operator rolls b back
    update_ledger(
        tmp_path,
        lambda led: replace(
            led,
            accepted={**led.accepted, "20260101T000000Z-a": Verdict("swapped in", 1)},
            refused={"20260102T000000Z-b": Verdict(ROLLBACK_REASON, 2)},
        ),
    )
    decision = slot.offer_newest(tmp_path)
    # a's MRR is half b's: the gate would refuse it against b, a fallback is not compared
    assert decision is not None and decision.accepted and "fallback" in decision.reason
    assert slot.version == "20260101T000000Z-a"
    assert slot.offer_newest(tmp_path) is None  # b stays refused


def test_a_pin_wins_over_newer_versions_and_unpinning_follows_the_newest(tmp_path: Path) -> None:
    from models.session.store import pinned_to, update_ledger

    names = ("20260101T000000Z-a", "20260102T000000Z-b", "20260103T000000Z-c")
    mrrs = _versions(tmp_path, (names[0], 0.01), (names[1], 0.10), (names[2], 0.11))
    slot = _slot(tmp_path, mrrs, [])
    slot.offer_newest(tmp_path)
    assert slot.version == names[2]
    update_ledger(tmp_path, lambda led: pinned_to(led, list(names), names[0]))
    decision = slot.offer_newest(tmp_path)
    # a is far below c: the gate would refuse it; a pin is the operator's choice
    assert decision is not None and decision.accepted and "pinned" in decision.reason
    assert slot.offer_newest(tmp_path) is None and slot.version == names[0]
    update_ledger(tmp_path, lambda led: replace(led, pinned=None))
    slot.offer_newest(tmp_path)
    assert slot.version == names[2]


class FavouriteModel(FakeModel):
    """A session model that ranks one item first whatever the prefix: scored by the real
    evaluator (``models.session.evaluation.evaluate``) through ``score`` and ``vocabulary``."""

    def __init__(self, manifest: dict, favourite: str) -> None:
        super().__init__(manifest)
        from models.session.data import Vocabulary

        self.vocabulary = Vocabulary([f"i{j}" for j in range(30)])
        self.favourite = self.vocabulary.index(favourite)

    def score(self, prefixes: Any) -> Any:
        import numpy as np

        scores = np.zeros((len(prefixes), self.vocabulary.size))
        scores[:, self.favourite] = 1.0
        return scores


def held_out(model: FavouriteModel, target: str, n: int = 4) -> FavouriteModel:
    """``model`` as the loader returns it: its shipped cases (every target ``target``) and what
    it reached on them."""
    from models.session.data import EvalCase
    from models.session.evaluation import evaluate

    model.holdout_cases = [EvalCase(("i0",), target) for _ in range(n)]
    model.holdout_metrics = evaluate(model, model.holdout_cases, model.vocabulary)
    return model


def test_the_serving_version_is_held_against_the_candidate_on_the_candidates_cases() -> None:
    # v1's manifest claims figures from an easier window; on v2's own cases (every target i7)
    # v1 never ranks the target while v2 does: v2 swaps in although its manifest reads lower.
    loader = FakeLoader()
    slot = ModelSlot(loader=loader, clock=lambda: 1.0)
    loader.models["/store/v1"] = FavouriteModel(manifest("v1", 0.50, 0.20), "i3")
    assert slot.offer("/store/v1").accepted
    fresher = held_out(FavouriteModel(manifest("v2", 0.30, 0.10), "i7"), "i7")
    loader.models["/store/v2"] = fresher
    assert quality_gate(fresher.manifest, slot.current().manifest) is not None  # raw: refused
    decision = slot.offer("/store/v2")
    assert decision.accepted and slot.version == "v2"
    # v3 claims more than v2 on its own window, but on its cases (every target i7) it misses
    # while the serving v2 ranks each target first: refused, v2 keeps serving.
    loader.models["/store/v3"] = held_out(FavouriteModel(manifest("v3", 0.60, 0.30), "i9"), "i7")
    refused = slot.offer("/store/v3")
    assert not refused.accepted and slot.version == "v2"
    assert "on the candidate's 4 test cases" in refused.reason
