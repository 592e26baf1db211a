"""Versioned, self-describing session-model artifacts: save, verify, load, find the newest.

A version is a directory under the model store (``model.keras``, ``vocab.json``,
``manifest.json``), written into a hidden temporary directory and renamed into place, so a reader
polling the store never sees half a version; version names sort by creation time, so the newest
is the greatest name. Loading never executes code from the files (no pickle; Keras' safe mode)
and refuses, with ``ArtifactRejected(reason)``, anything that does not check out: a hash, the
format, the vocabulary size, safe mode, or a smoke prediction that does not reproduce. The
layout and every refusal: docs/session-model.md, "Worker API" and "Artifact layout".
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from models.session.data import Vocabulary

FORMAT = "streamrec.session-model/1"
MODEL_FILE = "model.keras"
VOCAB_FILE = "vocab.json"
MANIFEST_FILE = "manifest.json"
ARTIFACT_FILES = (MODEL_FILE, VOCAB_FILE)
SMOKE_K = 5
#: Relative tolerance of the smoke check: thread counts change float summation order slightly.
SMOKE_RTOL = 1e-3


class ArtifactRejected(RuntimeError):
    """A model version failed verification; ``reason`` says which check, in words."""

    def __init__(self, reason: str, path: Path | str | None = None) -> None:
        self.reason = reason
        self.path = None if path is None else Path(path)
        super().__init__(reason if path is None else f"{path}: {reason}")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_hash(manifest: dict[str, Any]) -> str:
    """SHA-256 of the manifest (without ``content_hash``) in canonical JSON; it names the file
    hashes, so it covers the files as well.

    >>> content_hash({"a": 1}) == content_hash({"a": 1, "content_hash": "x"})
    True
    """
    body = {k: v for k, v in manifest.items() if k != "content_hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _is_version_dir(path: Path) -> bool:
    return path.is_dir() and not path.name.startswith(".") and (path / MANIFEST_FILE).is_file()


def list_versions(store: Path | str) -> list[Path]:
    """Version directories in the store, oldest first (hidden, in-progress ones skipped)."""
    root = Path(store)
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if _is_version_dir(p)), key=lambda p: p.name)


def newest_version(store: Path | str) -> Path | None:
    """The most recent version directory, or None for an empty store (not yet verified)."""
    versions = list_versions(store)
    return versions[-1] if versions else None


def _smoke_prefix(model: Any, prefix: list[str] | None) -> list[str]:
    if prefix:
        return prefix
    return list(model.vocabulary.items[:3])


def save_artifact(
    model: Any,
    store: Path | str,
    manifest_fields: dict[str, Any],
    smoke_prefix: list[str] | None = None,
    now: dt.datetime | None = None,
) -> Path:
    """Write ``model`` (a ``SessionModel``) as a new version in ``store``; return its directory.

    ``manifest_fields`` (dataset, data range, metrics, hyper-parameters, training time...) are
    stored as given; this function adds format, version, creation time, file hashes, the smoke
    check and the content hash.
    """
    from models.session._tf import keras, tensorflow

    tf, k = tensorflow(), keras()
    root = Path(store)
    root.mkdir(parents=True, exist_ok=True)
    created = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=root))
    try:
        model.encoder.save(tmp / MODEL_FILE)
        (tmp / VOCAB_FILE).write_text(
            json.dumps(model.vocabulary.to_json_dict(), separators=(",", ":")), encoding="utf-8"
        )
        files = {name: sha256_file(tmp / name) for name in ARTIFACT_FILES}
        files_digest = hashlib.sha256(
            "".join(f"{n}:{files[n]}\n" for n in ARTIFACT_FILES).encode()
        ).hexdigest()
        version = f"{created:%Y%m%dT%H%M%S}Z-{files_digest[:8]}"
        prefix = _smoke_prefix(model, smoke_prefix)
        top = model.recommend([prefix], SMOKE_K)[0]
        manifest = {
            **manifest_fields,
            "format": FORMAT,
            "version": version,
            "created_at": created.isoformat().replace("+00:00", "Z"),
            "vocab_size": model.vocabulary.size,
            "max_len": model.max_len,
            "keras_version": k.__version__,
            "tensorflow_version": tf.__version__,
            "files": files,
            "smoke": {"prefix": prefix, "top": [[item, score] for item, score in top]},
        }
        manifest["content_hash"] = content_hash(manifest)
        (tmp / MANIFEST_FILE).write_text(
            json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False) + "\n",
            encoding="utf-8",
        )
        final = root / version
        if final.exists():
            raise FileExistsError(f"version {version} already exists in {root}")
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    model.manifest = manifest
    return final


def read_manifest(path: Path | str) -> dict[str, Any]:
    """Parse and check a version's manifest and file hashes (no TensorFlow involved)."""
    folder = Path(path)
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ArtifactRejected("missing manifest.json", folder)
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactRejected(f"manifest.json is not valid JSON: {exc}", folder) from None
    if not isinstance(manifest, dict):
        raise ArtifactRejected("manifest.json is not a JSON object", folder)
    if manifest.get("format") != FORMAT:
        raise ArtifactRejected(f"unknown format {manifest.get('format')!r} (want {FORMAT})", folder)
    if manifest.get("content_hash") != content_hash(manifest):
        raise ArtifactRejected(
            "manifest content hash mismatch (manifest edited or damaged)", folder
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or set(files) != set(ARTIFACT_FILES):
        raise ArtifactRejected(f"manifest must list hashes for {', '.join(ARTIFACT_FILES)}", folder)
    for name in ARTIFACT_FILES:
        if not (folder / name).is_file():
            raise ArtifactRejected(f"missing {name}", folder)
        if sha256_file(folder / name) != files[name]:
            raise ArtifactRejected(f"hash mismatch for {name} (file changed or corrupted)", folder)
    return manifest


def load_session_model(path: Path | str, smoke: bool = True) -> Any:
    """Verify and load one version directory as a ``SessionModel``; raise ``ArtifactRejected``.

    Heavy (imports TensorFlow, reads the model): the worker calls it from an executor.
    """
    folder = Path(path)
    manifest = read_manifest(folder)
    try:
        vocab = Vocabulary.from_json_dict(
            json.loads((folder / VOCAB_FILE).read_text(encoding="utf-8"))
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactRejected(f"vocab.json unreadable: {exc}", folder) from None
    if vocab.size != manifest.get("vocab_size"):
        raise ArtifactRejected(
            f"vocabulary mismatch: vocab.json has {vocab.size} indices, "
            f"manifest says {manifest.get('vocab_size')}",
            folder,
        )

    from models.session._tf import keras
    from models.session.network import OutputHead
    from models.session.serving import SessionModel

    k = keras()
    try:
        encoder = k.models.load_model(folder / MODEL_FILE, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a bad or unsafe file
        raise ArtifactRejected(
            f"model.keras refused by Keras safe-mode load: {exc}", folder
        ) from None
    try:
        rows = OutputHead(encoder).vocab_size
    except (ValueError, AttributeError) as exc:
        raise ArtifactRejected(f"model is not a session model: {exc}", folder) from None
    if rows != vocab.size:
        raise ArtifactRejected(
            f"vocabulary mismatch: model has {rows} item rows, vocabulary {vocab.size}", folder
        )
    model = SessionModel(encoder, vocab, manifest, max_len=int(manifest.get("max_len", 50)))
    if smoke:
        _smoke_check(model, manifest, folder)
    return model


def _smoke_check(model: Any, manifest: dict[str, Any], folder: Path) -> None:
    spec = manifest.get("smoke") or {}
    prefix, expected = spec.get("prefix"), spec.get("top")
    if not isinstance(prefix, list) or not isinstance(expected, list) or not expected:
        raise ArtifactRejected("manifest has no smoke check", folder)
    try:
        scores = model.score([model.vocabulary.encode(prefix)])[0]
        top = model.recommend([prefix], SMOKE_K)[0]
    except Exception as exc:
        raise ArtifactRejected(f"smoke prediction failed: {exc}", folder) from None
    if not top or not all(np.isfinite(score) for _, score in top):
        raise ArtifactRejected("smoke prediction returned no finite scores", folder)
    want = np.array([float(score) for _, score in expected])
    got = np.array([float(scores[model.vocabulary.index(item)]) for item, _ in expected])
    if not np.allclose(got, want, rtol=SMOKE_RTOL, atol=SMOKE_RTOL):
        raise ArtifactRejected(
            f"smoke prediction does not reproduce the saved scores ({got} vs {want})", folder
        )
