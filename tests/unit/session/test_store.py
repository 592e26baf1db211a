"""The model store over time: the ledger, retention, pin and rollback, and the trainer's window."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from models.events import Interaction
from models.session.data import recent_window
from models.session.store import (
    LEDGER_FILE,
    Ledger,
    StoreError,
    Verdict,
    expired,
    fallback,
    list_versions,
    newest_candidate,
    pinned_to,
    prune,
    read_ledger,
    rolled_back,
    update_ledger,
)

OK = Verdict("swapped in", 1)
NO = Verdict("quality gate: worse", 2)
V = [f"2026120{d}T000000Z-{d:04d}" for d in range(1, 7)]


def _store(root: Path, names: list[str]) -> Path:
    for name in names:
        (root / name).mkdir(parents=True)
        (root / name / "manifest.json").write_text("{}")
    return root


def test_window_keeps_the_newest_stream_time_then_the_newest_events() -> None:
    events = [Interaction("u", f"i{t}", "view", 1_000_000 + t * 60_000) for t in range(100)]
    assert recent_window(events) == events
    hour = recent_window(events, seconds=3600)
    assert [e.item_id for e in hour] == [f"i{t}" for t in range(39, 100)]  # 60 minutes back
    assert recent_window(events, max_events=5) == events[-5:]
    assert recent_window(events, seconds=3600, max_events=100) == hour
    assert recent_window([], seconds=10, max_events=3) == []


def test_fallback_is_the_newest_accepted_version_not_refused_since() -> None:
    ledger = Ledger(accepted={V[0]: OK, V[1]: OK, V[3]: OK}, refused={V[3]: NO, V[4]: NO})
    assert fallback(V, ledger) == V[1]
    assert fallback(V, ledger, exclude=V[1]) == V[0]
    assert fallback(V[2:], ledger) is None  # the accepted ones are gone from the store
    assert newest_candidate(V, ledger) == V[5]
    assert newest_candidate(V[:5], ledger) == V[2]


def test_retention_keeps_the_newest_k_and_never_the_pinned_serving_or_fallback() -> None:
    assert expired(V, 3, Ledger()) == V[:3]
    assert expired(V, 0, Ledger()) == []  # 0 keeps everything
    assert expired(V, 10, Ledger()) == []
    ledger = Ledger(accepted={V[0]: OK, V[1]: OK}, pinned=V[2], serving=V[1])
    # V[1] serves and is the fallback, V[2] is pinned: only V[0] goes
    assert expired(V, 3, ledger) == [V[0]]


def test_prune_deletes_the_expired_versions_and_forgets_them(tmp_path: Path) -> None:
    store = _store(tmp_path, V)
    update_ledger(store, lambda _: Ledger(accepted={V[0]: OK, V[1]: OK}, refused={V[2]: NO}))
    assert prune(store, 2) == [V[0], V[2], V[3]]
    assert list_versions(store) == [V[1], V[4], V[5]]
    ledger = read_ledger(store)
    assert set(ledger.accepted) == {V[1]} and not ledger.refused


def test_the_ledger_survives_a_reread_and_a_damaged_one_reads_as_empty(tmp_path: Path) -> None:
    assert read_ledger(tmp_path / "absent") == Ledger()
    written = update_ledger(tmp_path, lambda _: Ledger(refused={V[0]: NO}, serving=V[1]))
    assert read_ledger(tmp_path) == written
    assert json.loads((tmp_path / LEDGER_FILE).read_text())["refused"][V[0]]["reason"] == NO.reason
    (tmp_path / LEDGER_FILE).write_text("{not json")
    assert read_ledger(tmp_path) == Ledger()


def test_concurrent_writers_lose_no_refusal(tmp_path: Path) -> None:
    def refuse(version: str) -> None:
        update_ledger(
            tmp_path, lambda led: Ledger(refused={**led.refused, version: NO}, serving=led.serving)
        )

    threads = [threading.Thread(target=refuse, args=(f"v{n}",)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(read_ledger(tmp_path).refused) == 20


def test_pin_withdraws_a_refusal_and_needs_a_version_in_the_store() -> None:
    ledger = pinned_to(Ledger(refused={V[0]: NO}), V, V[0])
    assert ledger.pinned == V[0] and V[0] not in ledger.refused
    with pytest.raises(StoreError, match="no version"):
        pinned_to(Ledger(), V, "nope")


def test_rollback_refuses_the_serving_version_and_names_the_fallback() -> None:
    ledger = Ledger(accepted={V[0]: OK, V[2]: OK}, serving=V[2])
    new, out, back = rolled_back(ledger, V, 9)
    assert (out, back) == (V[2], V[0])
    assert new.refused[V[2]].at_ms == 9 and new.pinned is None
    with pytest.raises(StoreError, match="no earlier accepted"):
        rolled_back(Ledger(accepted={V[2]: OK}, serving=V[2]), V, 9)
    with pytest.raises(StoreError, match="no version is serving"):
        rolled_back(Ledger(accepted={V[0]: OK}), V, 9)
