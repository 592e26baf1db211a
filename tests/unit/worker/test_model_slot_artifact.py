"""The slot with the real loader (``models.session.artifacts.load_session_model``) on tiny,
untrained Keras encoders: a good version is swapped in and serves; every model store attack
(docs/session-model.md, "Model store attacks") is refused with its reason while the good one
keeps serving. Seconds, mostly TensorFlow's import and one Keras load per attack."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from models.session import artifacts
from models.session.artifacts import (
    ARTIFACT_FILES,
    HOLDOUT_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    content_hash,
    save_artifact,
    sha256_file,
)
from models.session.data import EvalCase, Vocabulary
from models.session.network import EMBEDDING_LAYER, PROJECTION_LAYER, build_encoder
from models.session.serving import SessionModel
from stream_app.kafka.model_updates import ModelUpdate, encode_update, parse_update
from stream_app.worker.model_slot import ModelSlot, newest_in_store

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

METRICS = {
    "test": {"recall@20": 0.30, "mrr@20": 0.10},
    "baselines": {"pop": {"recall@20": 0.10, "mrr@20": 0.03}},
}
VOCAB = Vocabulary([f"i{j}" for j in range(12)])


def _holdout(n: int = 40) -> list[EvalCase]:
    rng = np.random.default_rng(7)
    pick = lambda: f"i{rng.integers(0, 12)}"  # noqa: E731
    return [EvalCase((pick(), pick()), pick()) for _ in range(n)]


def _save(encoder: Any, store: Path, hour: int) -> Path:
    model = SessionModel(encoder, VOCAB)
    when = dt.datetime(2026, 11, 23, hour, 0, tzinfo=dt.UTC)
    fields = {"dataset": "tiny", "metrics": METRICS}
    return save_artifact(model, store, fields, ["i1", "i2"], now=when, holdout=_holdout())


def _rehash(folder: Path, **changes: Any) -> None:
    """Make the manifest consistent with the files again, with ``changes`` (a careful forger)."""
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest.update(changes)
    manifest["files"] = {name: sha256_file(folder / name) for name in ARTIFACT_FILES}
    manifest["content_hash"] = content_hash(manifest)
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))


@keras.saving.register_keras_serializable(package="attack")
class Marker(keras.layers.Layer):
    """A custom layer that touches a file whenever it runs: proof that code ran."""

    def __init__(self, marker: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.marker = marker

    def call(self, x: Any) -> Any:
        Path(self.marker).touch()
        return x

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "marker": self.marker}


def _with_code(layer: Any) -> Any:
    """A working tied session network with ``layer`` between its embedding and its GRU."""
    items = keras.Input(shape=(None,), dtype="int32")
    normal = keras.initializers.RandomNormal(stddev=0.05)
    x = keras.layers.Embedding(VOCAB.size, 4, embeddings_initializer=normal, name=EMBEDDING_LAYER)(
        items
    )
    x = keras.layers.GRU(4, return_sequences=True)(layer(x))
    return keras.Model(items, keras.layers.Dense(4, name=PROJECTION_LAYER)(x))


def _lambda(marker: Path) -> Any:
    touch = lambda x, path: (open(path, "w").close(), x)[1]  # noqa: E731
    return keras.layers.Lambda(touch, arguments={"path": str(marker)})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelSlot, Path]:
    store = tmp_path_factory.mktemp("store")
    good = _save(build_encoder(VOCAB.size, embedding_dim=4, hidden_units=4), store, 5)
    slot = ModelSlot()
    decision = slot.offer_newest(store)  # also makes ``store`` the slot's store
    assert decision is not None and decision.accepted, decision
    return slot, good


def test_real_artifact_swaps_in_and_a_corrupted_one_is_refused(
    served: tuple[ModelSlot, Path],
) -> None:
    slot, good = served
    assert slot.version == good.name and slot.store == good.parent
    top = slot.current().recommend([["i1", "i2"]], 3)[0]
    assert len(top) == 3 and all(item.startswith("i") for item, _ in top)

    # A newer version whose model file was damaged after the manifest was written.
    bad = good.parent / "20261123T060000Z-deadbeef"
    shutil.copytree(good, bad)
    raw = bytearray((bad / MODEL_FILE).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (bad / MODEL_FILE).write_bytes(bytes(raw))
    assert newest_in_store(good.parent) == bad

    refused = slot.offer_newest(good.parent)
    assert refused is not None and not refused.accepted
    assert "hash mismatch for model.keras" in refused.reason
    assert slot.version == good.name
    assert slot.current().recommend([["i3"]], 2)[0]
    assert slot.offer_newest(good.parent) is None  # refused once, not reloaded on the next poll
    shutil.rmtree(bad)


# Each attack: given the good version and a directory outside the store, return the path that
# is offered. Names are unique so that no refusal is answered from the slot's memory.
def _truncate(good: Path, name: str) -> Path:
    bad = Path(shutil.copytree(good, good.parent / name))
    raw = (bad / MODEL_FILE).read_bytes()
    (bad / MODEL_FILE).write_bytes(raw[: len(raw) // 2])
    return bad


def _truncated(good: Path, outside: Path) -> Path:
    return _truncate(good, "20261124T000000Z-truncated")


def _truncated_rehashed(good: Path, outside: Path) -> Path:
    bad = _truncate(good, "20261124T000000Z-truncated-rehashed")
    _rehash(bad)
    return bad


def _other_weights(good: Path, outside: Path) -> Path:
    bad = Path(shutil.copytree(good, good.parent / "20261124T000000Z-other-weights"))
    build_encoder(VOCAB.size, embedding_dim=4, hidden_units=4).save(bad / MODEL_FILE)
    return bad


def _easier_holdout(good: Path, outside: Path) -> Path:
    bad = Path(shutil.copytree(good, good.parent / "20261124T000000Z-holdout"))
    (bad / HOLDOUT_FILE).write_text('{"of": 1, "cases": [{"prefix": ["i1"], "target": "i2"}]}')
    return bad


def _lying_metrics(good: Path, outside: Path) -> Path:
    bad = Path(shutil.copytree(good, good.parent / "20261124T000000Z-lying"))
    claims = {"test": {"recall@20": 1.0, "mrr@20": 0.99}, "baselines": METRICS["baselines"]}
    _rehash(bad, metrics=claims, version=bad.name)  # would be swapped in if believed
    return bad


def _old_format(good: Path, outside: Path) -> Path:
    bad = Path(shutil.copytree(good, good.parent / "20261124T000000Z-old-format"))
    _rehash(bad, format=artifacts.FORMAT_WITHOUT_HOLDOUT)
    return bad


def _symlinked_version(good: Path, outside: Path) -> Path:
    target = Path(shutil.copytree(good, outside / good.name))  # a valid version, elsewhere
    link = good.parent / "20261124T000000Z-dir-link"
    link.symlink_to(target, target_is_directory=True)
    return link


def _symlinked_file(name: str) -> Callable[[Path, Path], Path]:
    def attack(good: Path, outside: Path) -> Path:
        bad = Path(shutil.copytree(good, good.parent / f"20261124T000000Z-link-{name}"))
        target = Path(shutil.copy(bad / name, outside / name))  # same bytes: hashes match
        (bad / name).unlink()
        (bad / name).symlink_to(target)
        return bad

    return attack


def _traversal_message(good: Path, outside: Path) -> Path:
    copy = Path(shutil.copytree(good, outside / good.name))  # would load fine if opened
    raw = encode_update(ModelUpdate(copy.name, f"{good.parent}/../{outside.name}/{copy.name}"))
    return Path(parse_update(raw).path)


def _absolute_message(good: Path, outside: Path) -> Path:
    copy = Path(shutil.copytree(good, outside / good.name))
    return Path(parse_update(encode_update(ModelUpdate(copy.name, str(copy)))).path)


ATTACKS: dict[str, tuple[Callable[[Path, Path], Path], str]] = {
    "truncated file": (_truncated, "load failed: hash mismatch for model.keras"),
    "truncated, manifest rehashed": (_truncated_rehashed, "not a readable Keras archive"),
    "model swapped after the manifest": (_other_weights, "hash mismatch for model.keras"),
    "held-out cases swapped": (_easier_holdout, "hash mismatch for holdout.json"),
    "manifest lies about metrics": (
        _lying_metrics,
        "load failed: manifest claims mrr@20 0.99 but the model reaches",
    ),
    "manifest without held-out cases": (_old_format, "ships no held-out cases"),
    "version directory symlinked out": (_symlinked_version, "dir-link is a symbolic link"),
    "model file symlinked out": (_symlinked_file(MODEL_FILE), "model.keras is a symbolic link"),
    "manifest symlinked out": (_symlinked_file(MANIFEST_FILE), "manifest.json is a symbolic link"),
    "traversal path in a message": (_traversal_message, "refused unopened: path traversal"),
    "absolute path in a message": (_absolute_message, "is outside the model store"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_store_attack_is_refused_and_the_good_version_keeps_serving(
    attack: str, served: tuple[ModelSlot, Path], tmp_path: Path
) -> None:
    slot, good = served
    make, reason = ATTACKS[attack]
    decision = slot.offer(make(good, tmp_path), trigger="update")
    assert not decision.accepted and reason in decision.reason, decision.reason
    assert slot.version == good.name
    assert slot.current().recommend([["i1", "i2"]], 3)[0]


@pytest.mark.parametrize("kind", ["lambda", "custom"])
def test_code_in_the_model_file_never_runs(
    kind: str, served: tuple[ModelSlot, Path], tmp_path: Path
) -> None:
    slot, good = served
    marker = tmp_path / "code-ran"
    layer = _lambda(marker) if kind == "lambda" else Marker(str(marker))
    # An honest save of a model with code in it: hashes, smoke check and metrics all consistent.
    bad = _save(_with_code(layer), good.parent, 6 if kind == "lambda" else 7)
    marker.unlink()  # building and saving ran the layer
    decision = slot.offer(bad, trigger="update")
    name = "keras.layers.Lambda" if kind == "lambda" else "Marker"
    assert not decision.accepted and "names objects outside the session network" in decision.reason
    assert name in decision.reason
    assert not marker.exists()  # nothing in the file ran
    assert slot.version == good.name and slot.current().recommend([["i1"]], 2)[0]
    # The marker works: Keras runs a registered custom layer even in safe mode, and a Lambda
    # outside it. The allowlist is what stood between the file and the worker.
    keras.models.load_model(bad / MODEL_FILE, compile=False, safe_mode=kind == "custom")
    assert marker.exists()


def test_keras_safe_mode_still_refuses_a_lambda_the_allowlist_let_through(
    served: tuple[ModelSlot, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slot, good = served
    marker = tmp_path / "code-ran"
    bad = _save(_with_code(_lambda(marker)), good.parent, 8)
    marker.unlink()
    lambdas = {("keras.layers", "Lambda", None), (None, "__lambda__", None)}
    monkeypatch.setattr(artifacts, "KERAS_OBJECTS", artifacts.KERAS_OBJECTS | lambdas)
    decision = slot.offer(bad, trigger="update")
    assert not decision.accepted and "refused by Keras safe-mode load" in decision.reason
    assert not marker.exists() and slot.version == good.name


def test_the_loader_keeps_the_held_out_cases_the_gate_scores_the_serving_version_on(
    tmp_path: Path,
) -> None:
    from models.session.gate import head_to_head

    store = tmp_path / "store"
    first = _save(build_encoder(VOCAB.size, embedding_dim=4, hidden_units=4), store, 5)
    second = _save(build_encoder(VOCAB.size, embedding_dim=4, hidden_units=4), store, 6)
    serving = artifacts.load_session_model(first)
    candidate = artifacts.load_session_model(second)
    assert candidate.holdout_cases == _holdout()  # the shipped cases, as saved
    assert candidate.holdout_metrics["recall@20"] == 1.0  # 12 items: all in any top 20
    paired = head_to_head(
        candidate, serving, candidate.holdout_cases, measured=candidate.holdout_metrics
    )
    assert paired is not None and paired.cases == len(_holdout())
    assert paired.candidate == candidate.holdout_metrics
    assert paired.serving["recall@20"] == 1.0 and 0.0 < paired.serving["mrr@20"] <= 1.0
    slot = ModelSlot()
    assert slot.offer(first).accepted
    decision = slot.offer(second)
    expected = paired.candidate["mrr@20"] >= paired.serving["mrr@20"] * 0.95
    assert decision.accepted == expected, decision.reason
    if not expected:
        assert f"on the candidate's {len(_holdout())} test cases" in decision.reason
