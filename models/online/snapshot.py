"""Snapshot/restore of an :class:`OnlineRecommender` as JSON + ``.npz``: data only, no code.

A restarted worker loads the last snapshot instead of starting cold. Nothing in the format can
execute code when read: ``manifest.json`` holds configuration and small state (vocabulary, user
histories, re-ranker weights), ``arrays.npz`` the numeric tables, loaded with
``allow_pickle=False``. The manifest carries a format version and a SHA-256 of the arrays file,
checked before anything is restored.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from models.online.history import UserState
from models.online.recommender import OnlineRecommender
from models.online.reranker import LinearReranker
from models.online.vocab import Vocabulary

FORMAT = "streamrec-online"
FORMAT_VERSION = 1


class SnapshotError(ValueError):
    """The snapshot is missing, corrupt, of another format, or does not fit this model."""


def _config(model: OnlineRecommender) -> dict[str, Any]:
    names = [p for p in inspect.signature(OnlineRecommender).parameters if p != "catalog"]
    return {name: getattr(model, name) for name in names}


def _json_float(value: float) -> float | str:
    return "inf" if isinstance(value, float) and math.isinf(value) else value


def _from_json_float(value: Any) -> Any:
    return math.inf if value == "inf" else value


def save_snapshot(model: OnlineRecommender, directory: str | Path) -> Path:
    """Write ``manifest.json`` and ``arrays.npz`` under ``directory``; returns the directory."""
    if model.ranker is not None and not isinstance(model.ranker, LinearReranker):
        raise SnapshotError("only the 'logreg' re-ranker (or none) can be snapshotted")
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    parts: dict[str, Any] = {}
    for name, part in (
        ("similarity", model.similarity),
        ("transitions", model.transitions),
        ("popularity", model.popularity),
        ("counts", model.counts),
        ("content", model.content_sim),
    ):
        if part is None:
            continue
        meta, part_arrays = part.state()
        parts[name] = {k: _json_float(v) for k, v in meta.items()}
        arrays.update({f"{name}.{k}": v for k, v in part_arrays.items()})
    users = {
        user: {
            "items": s.items,
            "weights": s.weights,
            "event_types": s.event_types,
            "consumed": list(s.consumed),
            "last_ms": s.last_ms,
            "session_start": s.session_start,
            "n_events": s.n_events,
        }
        for user, s in model.history.users.items()
    }
    arrays_path = target / "arrays.npz"
    with arrays_path.open("wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": {k: _json_float(v) for k, v in _config(model).items()},
        "vocab": model.vocab.items,
        "attributes": model.attributes,
        "catalog": model.catalog,
        "users": users,
        "item_users": (
            {str(i): list(q) for i, q in model.user_neighbors._item_users.items()}
            if model.user_neighbors is not None
            else None
        ),
        "parts": parts,
        "reranker": model.ranker.state() if model.ranker is not None else None,
        "rng": model._rng.bit_generator.state,
        "n_seen": model._n_seen,
        "arrays_sha256": hashlib.sha256(arrays_path.read_bytes()).hexdigest(),
    }
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def load_snapshot(directory: str | Path) -> OnlineRecommender:
    """Rebuild the model written by :func:`save_snapshot`, after checking format and hash."""
    source = Path(directory)
    try:
        manifest = json.loads((source / "manifest.json").read_text())
        raw = (source / "arrays.npz").read_bytes()
    except (OSError, json.JSONDecodeError) as exc:
        raise SnapshotError(f"cannot read snapshot in {source}: {exc}") from None
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise SnapshotError("not a streamrec-online snapshot of a supported version")
    if hashlib.sha256(raw).hexdigest() != manifest["arrays_sha256"]:
        raise SnapshotError("arrays.npz does not match the manifest's SHA-256")
    config = {k: _from_json_float(v) for k, v in manifest["config"].items()}
    model = OnlineRecommender(catalog=manifest["catalog"], **config)
    with np.load(source / "arrays.npz", allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    model.vocab = Vocabulary(manifest["vocab"])
    for part in (model.similarity, model.popularity, model.counts):
        part.vocab = model.vocab
    model.attributes = {k: list(v) for k, v in manifest["attributes"].items()}
    parts: dict[str, Any] = {
        "similarity": model.similarity,
        "transitions": model.transitions,
        "popularity": model.popularity,
        "counts": model.counts,
        "content": model.content_sim,
    }
    for name, meta in manifest["parts"].items():
        part = parts[name]
        if part is None:
            raise SnapshotError(f"snapshot has {name} state but the config disables it")
        prefix = name + "."
        part.load_state(
            {k: _from_json_float(v) for k, v in meta.items()},
            {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)},
        )
    for user, s in manifest["users"].items():
        model.history.users[user] = UserState(
            items=list(s["items"]),
            weights=list(s["weights"]),
            event_types=list(s["event_types"]),
            consumed=dict.fromkeys(s["consumed"]),
            last_ms=s["last_ms"],
            session_start=s["session_start"],
            n_events=s["n_events"],
        )
    if model.user_neighbors is not None and manifest["item_users"] is not None:
        cap = model.user_neighbors.users_per_item
        model.user_neighbors._item_users = {
            int(i): deque(users, maxlen=cap) for i, users in manifest["item_users"].items()
        }
    if isinstance(model.ranker, LinearReranker) and manifest["reranker"] is not None:
        model.ranker.load_state(manifest["reranker"])
    model._rng.bit_generator.state = manifest["rng"]
    model._n_seen = int(manifest["n_seen"])
    return model
