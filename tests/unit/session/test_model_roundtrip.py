"""Tiny end-to-end: train, save, load, predict; damaged or mismatched artifacts are refused."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.datasets.synthetic import SyntheticConfig, generate_synthetic
from models.session.artifacts import (
    ARTIFACT_FILES,
    MANIFEST_FILE,
    MODEL_FILE,
    VOCAB_FILE,
    ArtifactRejected,
    content_hash,
    list_versions,
    load_session_model,
    newest_version,
    save_artifact,
    sha256_file,
)
from models.session.data import Vocabulary, session_protocol
from models.session.evaluation import evaluate
from models.session.trainer import GRUConfig, train_gru

# Keras 3.15 itself converts variables with np.array(x) when saving and loading; NumPy 2 warns.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

TINY = GRUConfig(
    embedding_dim=8,
    hidden_units=8,
    batch_size=16,
    negatives=16,
    max_len=10,
    epochs=2,
    min_updates=0,
    patience=2,
    validation_cases=200,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data = generate_synthetic(
        SyntheticConfig(n_users=60, n_items=40, n_clusters=4, n_events=1500, seed=3)
    )
    split = session_protocol(data.events)
    vocab = Vocabulary.build(s.items for s in split.train)
    result = train_gru([vocab.encode(s.items) for s in split.train], vocab, split.validation, TINY)
    store = tmp_path_factory.mktemp("store")
    metrics = evaluate(result.model, split.test, vocab)  # what the trainer records
    path = save_artifact(
        result.model,
        store,
        {"dataset": "tiny", "metrics": metrics},
        ["i1", "i2"],
        holdout=split.test,
    )
    return {
        "result": result,
        "split": split,
        "vocab": vocab,
        "store": store,
        "path": path,
        "metrics": metrics,
    }


def _copy(trained: dict[str, Any], tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained["path"], tmp_path / trained["path"].name))


def _rehash(folder: Path, **changes: Any) -> None:
    """Make the manifest consistent with the files again, with ``changes`` to its fields (a
    careful forger, or a bad trainer)."""
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest.update(changes)
    manifest["files"] = {name: sha256_file(folder / name) for name in ARTIFACT_FILES}
    manifest["content_hash"] = content_hash(manifest)
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))


def test_training_ran_and_reports_updates(trained: dict[str, Any]) -> None:
    result = trained["result"]
    assert result.updates > 0 and 1 <= result.best_epoch <= TINY.epochs
    assert all(np.isfinite(row["loss"]) for row in result.history)
    metrics = evaluate(result.model, trained["split"].test, trained["vocab"])
    assert metrics["cases"] == len(trained["split"].test) > 0
    assert 0.0 <= metrics["mrr@20"] <= metrics["recall@20"] <= 1.0


def test_round_trip_gives_the_same_recommendations(trained: dict[str, Any]) -> None:
    original = trained["result"].model
    loaded = load_session_model(trained["path"])
    prefixes = [list(c.prefix) for c in trained["split"].test[:50]]
    want, got = original.recommend(prefixes, 10), loaded.recommend(prefixes, 10)
    assert [[i for i, _ in row] for row in got] == [[i for i, _ in row] for row in want]
    assert np.allclose([s for row in got for _, s in row], [s for row in want for _, s in row])
    assert loaded.manifest["version"] == trained["path"].name == loaded.version
    assert loaded.manifest["metrics"] == trained["metrics"]
    assert newest_version(trained["store"]) == trained["path"]


def test_recommend_is_batched_and_honours_exclusions(trained: dict[str, Any]) -> None:
    model = trained["result"].model
    prefixes = [["i1", "i2"], ["i5"], ["never-seen", "i3"], []]
    batched = model.recommend(prefixes, 5)
    for prefix, row in zip(prefixes[:3], batched[:3], strict=True):
        alone = model.recommend([prefix], 5)[0]
        assert [i for i, _ in row] == [i for i, _ in alone]
        assert np.allclose([s for _, s in row], [s for _, s in alone], rtol=1e-5, atol=1e-6)
        assert len(row) == 5 and [s for _, s in row] == sorted((s for _, s in row), reverse=True)
    assert batched[3] == []  # empty prefix: nothing to go on
    top = [item for item, _ in batched[0]]
    excluded = model.recommend([prefixes[0]], 5, exclude=[top[:2]])[0]
    assert not set(top[:2]) & {item for item, _ in excluded}
    everything = model.recommend([["i1"]], 10_000)[0]
    assert len(everything) == trained["vocab"].size - 2  # never padding or OOV
    with pytest.raises(ValueError):
        model.recommend([["i1"]], 0)


def test_store_listing_skips_incomplete_versions(trained: dict[str, Any], tmp_path: Path) -> None:
    copy = _copy(trained, tmp_path)
    (tmp_path / ".incoming-x").mkdir()
    (tmp_path / "zzz-no-manifest").mkdir()
    assert list_versions(tmp_path) == [copy]
    assert newest_version(tmp_path / "absent") is None


def test_missing_manifest_is_refused(trained: dict[str, Any], tmp_path: Path) -> None:
    folder = _copy(trained, tmp_path)
    (folder / MANIFEST_FILE).unlink()
    with pytest.raises(ArtifactRejected, match="missing manifest"):
        load_session_model(folder)


def test_corrupted_model_file_is_refused(trained: dict[str, Any], tmp_path: Path) -> None:
    folder = _copy(trained, tmp_path)
    data = bytearray((folder / MODEL_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(ArtifactRejected, match=r"hash mismatch for model\.keras"):
        load_session_model(folder)


def test_edited_manifest_is_refused(trained: dict[str, Any], tmp_path: Path) -> None:
    folder = _copy(trained, tmp_path)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest["metrics"]["mrr@20"] = 0.99
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactRejected, match="content hash mismatch"):
        load_session_model(folder)


def test_unknown_format_and_bad_json_are_refused(trained: dict[str, Any], tmp_path: Path) -> None:
    folder = _copy(trained, tmp_path)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest["format"] = "something-else/9"
    manifest["content_hash"] = content_hash(manifest)
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactRejected, match="unknown format"):
        load_session_model(folder)
    (folder / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ArtifactRejected, match="not valid JSON"):
        load_session_model(folder)


def test_vocabulary_mismatch_is_refused(trained: dict[str, Any], tmp_path: Path) -> None:
    folder = _copy(trained, tmp_path)
    vocab = json.loads((folder / VOCAB_FILE).read_text())
    vocab["items"] = vocab["items"][:-1]
    (folder / VOCAB_FILE).write_text(json.dumps(vocab))
    _rehash(folder)
    with pytest.raises(ArtifactRejected, match="vocabulary mismatch"):
        load_session_model(folder)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest["vocab_size"] -= 1  # now manifest and vocab agree, the model does not
    manifest["content_hash"] = content_hash(manifest)
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactRejected, match="vocabulary mismatch: model has"):
        load_session_model(folder)


def test_not_a_keras_file_is_refused(trained: dict[str, Any], tmp_path: Path) -> None:
    folder = _copy(trained, tmp_path)
    (folder / MODEL_FILE).write_bytes(b"not a zip archive")
    _rehash(folder)
    with pytest.raises(ArtifactRejected, match="not a readable Keras archive"):
        load_session_model(folder)


def test_the_loader_follows_no_link_and_reads_only_regular_files(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    # Lambda and custom layers, links inside a version: tests/unit/worker/test_model_slot_artifact
    link = tmp_path / "linked"
    link.symlink_to(trained["path"], target_is_directory=True)
    with pytest.raises(ArtifactRejected, match="version directory is a symbolic link"):
        load_session_model(link)
    folder = _copy(trained, tmp_path)
    (folder / VOCAB_FILE).unlink()
    os.mkfifo(folder / VOCAB_FILE)  # opening it for reading would block the loader for good
    with pytest.raises(ArtifactRejected, match=r"vocab\.json is not a regular file"):
        load_session_model(folder)


def test_other_weights_fail_the_smoke_check(trained: dict[str, Any], tmp_path: Path) -> None:
    from models.session.network import build_encoder

    folder = _copy(trained, tmp_path)
    other = build_encoder(
        trained["vocab"].size,
        TINY.embedding_dim,
        TINY.hidden_units,
        tied=TINY.tied,
        item_skip=TINY.item_skip,
    )
    other.save(folder / MODEL_FILE)
    _rehash(folder)
    with pytest.raises(ArtifactRejected, match="smoke prediction does not reproduce"):
        load_session_model(folder)
    assert load_session_model(folder, smoke=False).vocabulary.size == trained["vocab"].size


@pytest.mark.parametrize("tied", [True, False])
def test_compiled_and_plain_paths_agree_for_both_heads(tied: bool) -> None:
    from models.session.network import build_encoder
    from models.session.serving import SessionModel

    vocab = Vocabulary([f"i{n}" for n in range(30)])
    encoder = build_encoder(vocab.size, 8, 8, tied=tied, item_skip=not tied)
    prefixes = [["i1", "i2", "i3"], ["i4"], ["i5"] * 25]  # the last one is cut to max_len
    xla = SessionModel(encoder, vocab, max_len=20, jit_compile=True).recommend(prefixes, 5)
    plain = SessionModel(encoder, vocab, max_len=20, jit_compile=False).recommend(prefixes, 5)
    assert [[i for i, _ in row] for row in xla] == [[i for i, _ in row] for row in plain]
    assert np.allclose([s for row in xla for _, s in row], [s for row in plain for _, s in row])
