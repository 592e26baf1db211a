"""The model-updates message contract: what ``parse_update`` refuses, and that it hands a path on
as sent without touching the filesystem (the slot judges it against the store, unopened)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stream_app.kafka.model_updates import (
    MAX_PATH_CHARS,
    InvalidUpdate,
    ModelUpdate,
    encode_update,
    parse_update,
)
from stream_app.worker.model_slot import ModelSlot


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"version": "v", "path": "/store/v\x00/../etc"}, "no NUL byte"),
        ({"version": "v", "path": "/store/" + "a" * MAX_PATH_CHARS}, "at most 4096"),
        ({"version": "v", "path": ""}, "path must be a non-empty string"),
        ({"version": "v", "path": ["/etc"]}, "path must be a non-empty string"),
        ({"version": "", "path": "/store/v"}, "version must be a non-empty string"),
        ({"version": "v", "path": "/store/v", "metrics": {"mrr@20": "1"}}, "finite numbers"),
    ],
)
def test_malformed_updates_are_refused_with_a_reason(payload: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidUpdate, match=reason):
        parse_update(json.dumps(payload).encode())


@pytest.mark.parametrize("path", ["../../etc", "/etc/passwd", "/store/../../etc", "/tmp/link"])
def test_a_traversal_path_is_handed_on_as_sent_and_the_slot_refuses_it_unopened(
    path: str, tmp_path: Path
) -> None:
    update = parse_update(encode_update(ModelUpdate("20260101T000000Z-aaaa", path)))
    assert update.path == path  # not resolved, not normalised, nothing opened

    opened: list[Path] = []

    def loader(p: Path) -> Any:
        opened.append(p)
        raise AssertionError("nothing outside the store may be opened")

    slot = ModelSlot(loader=loader, store=tmp_path / "store")
    decision = slot.offer(update.path, trigger="update")
    assert not decision.accepted and decision.reason.startswith("refused unopened: ")
    assert ("path traversal" if ".." in path else "outside the model store") in decision.reason
    assert opened == []
