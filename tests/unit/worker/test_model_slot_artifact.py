"""The slot with the real loader (``models.session.artifacts.load_session_model``) on a tiny,
untrained Keras encoder: a good version is swapped in and serves; a corrupted newer one is
refused for its hash while the good one keeps serving. Seconds, mostly TensorFlow's import."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from models.session.artifacts import MODEL_FILE, save_artifact
from models.session.data import Vocabulary
from models.session.network import build_encoder
from models.session.serving import SessionModel
from stream_app.worker.model_slot import ModelSlot, newest_in_store

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

METRICS = {
    "test": {"recall@20": 0.30, "mrr@20": 0.10},
    "baselines": {"pop": {"recall@20": 0.10, "mrr@20": 0.03}},
}


def test_real_artifact_swaps_in_and_a_corrupted_one_is_refused(tmp_path: Path) -> None:
    vocab = Vocabulary([f"i{j}" for j in range(12)])
    model = SessionModel(build_encoder(vocab.size, embedding_dim=4, hidden_units=4), vocab)
    store = tmp_path / "store"
    good = save_artifact(
        model,
        store,
        {"dataset": "tiny", "metrics": METRICS},
        ["i1", "i2"],
        now=dt.datetime(2026, 11, 23, 5, 0, tzinfo=dt.UTC),
    )
    slot = ModelSlot()
    decision = slot.offer_newest(store)
    assert decision is not None and decision.accepted, decision
    assert slot.version == good.name
    top = slot.current().recommend([["i1", "i2"]], 3)[0]
    assert len(top) == 3 and all(item.startswith("i") for item, _ in top)

    # A newer version whose model file was damaged after the manifest was written.
    bad = store / "20261123T060000Z-deadbeef"
    shutil.copytree(good, bad)
    raw = bytearray((bad / MODEL_FILE).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (bad / MODEL_FILE).write_bytes(bytes(raw))
    assert newest_in_store(store) == bad

    refused = slot.offer_newest(store)
    assert refused is not None and not refused.accepted
    assert "hash mismatch for model.keras" in refused.reason
    assert slot.version == good.name
    assert slot.current().recommend([["i3"]], 2)[0]
    assert slot.offer_newest(store) is None  # refused once, not reloaded on the next poll
