"""Versioned, self-describing session-model artifacts: save, verify, load, find the newest.

A version is a directory under the model store (``model.keras``, ``vocab.json``,
``holdout.json``, ``manifest.json``), written into a hidden temporary directory and renamed into
place, so a poller never sees half a version; names sort by creation time. Loading reads each
file once, never through a symbolic link, and loads what it hashed; it never executes code from
the files (no pickle; only the network's own Keras classes, then Keras' safe mode) and refuses,
with ``ArtifactRejected(reason)``, anything that does not check out: a hash, the format, the
vocabulary, the archive, a smoke prediction, or metrics the model does not reach on its
held-out cases. Layout, refusals, attacks: docs/session-model.md.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import io
import json
import math
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.session.data import EvalCase, Vocabulary
from models.session.evaluation import REPORTED, evaluate

FORMAT = "streamrec.session-model/2"
#: The previous format: the same files without held-out cases, so its metrics cannot be checked.
FORMAT_WITHOUT_HOLDOUT = "streamrec.session-model/1"
MODEL_FILE = "model.keras"
VOCAB_FILE = "vocab.json"
HOLDOUT_FILE = "holdout.json"
MANIFEST_FILE = "manifest.json"
ARTIFACT_FILES = (MODEL_FILE, VOCAB_FILE, HOLDOUT_FILE)
SMOKE_K = 5
#: Relative tolerance of the smoke check: thread counts change float summation order slightly.
SMOKE_RTOL = 1e-3
#: Test cases shipped with a version, so the loader re-measures the manifest's metrics itself
#: (0.2 s of a 0.9 s load on the MovieLens model; docs/session-model.md, "Model store attacks").
HOLDOUT_CASES = 2000
#: A claim may exceed the held-out measurement by this many standard errors (one-sided, about
#: 3e-5 false refusals per metric) plus two cases' worth of float ties.
HOLDOUT_Z = 4.0
#: The largest file (or unpacked Keras archive) the loader reads into memory.
MAX_FILE_BYTES = 1 << 30
#: What a Keras 3 ``.keras`` archive of our network holds; any other member is refused.
KERAS_MEMBERS = frozenset({"config.json", "metadata.json", "model.weights.h5"})
#: Every object ``(module, class_name, registered_name)`` that ``network.build_encoder`` puts in
#: a model's config.json. Anything else (``Lambda``, a custom or registered class, a function) is
#: refused before Keras reads the file, so a gap in Keras' safe mode is not ours too.
KERAS_OBJECTS = frozenset(
    {
        ("keras.src.models.functional", "Functional", "Functional"),
        ("keras.src.ops.numpy", "NotEqual", "NotEqual"),  # Embedding's padding mask
        (None, "__keras_tensor__", None),
        ("keras", "DTypePolicy", None),
        *(
            ("keras.layers", name, None)
            for name in ("InputLayer", "Embedding", "Dropout", "GRU", "Concatenate", "Dense")
        ),
        *(
            ("keras.initializers", name, None)
            for name in ("GlorotUniform", "Orthogonal", "RandomNormal", "Zeros")
        ),
    }
)


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


def _numbers(raw: Any) -> dict[str, float]:
    if not isinstance(raw, Mapping):
        return {}
    out: dict[str, float] = {}
    for name, value in raw.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[str(name)] = float(value)
    return out


def manifest_metrics(manifest: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, dict]]:
    """``(test metrics, {baseline: metrics})`` from a manifest in either accepted shape (the
    loader checks the first against the model, the worker's gate reads both).

    >>> manifest_metrics({"metrics": {"test": {"mrr@20": 0.2},
    ...                               "baselines": {"pop": {"mrr@20": 0.05}}}})
    ({'mrr@20': 0.2}, {'pop': {'mrr@20': 0.05}})
    >>> manifest_metrics({"metrics": {"mrr@20": 0.2}, "baselines": {"pop": {"mrr@20": 0.1}}})
    ({'mrr@20': 0.2}, {'pop': {'mrr@20': 0.1}})
    """
    metrics = manifest.get("metrics")
    metrics = metrics if isinstance(metrics, Mapping) else {}
    test = _numbers(metrics["test"]) if isinstance(metrics.get("test"), Mapping) else {}
    if not test:
        test = _numbers(metrics)
    raw_baselines = metrics.get("baselines", manifest.get("baselines"))
    baselines: dict[str, dict] = {}
    if isinstance(raw_baselines, Mapping):
        for name, values in raw_baselines.items():
            numbers = _numbers(values)
            if numbers:
                baselines[str(name)] = numbers
    return test, baselines


def version_in_store(path: Path | str, store: Path | str) -> Path:
    """``path`` as an absolute path if it names a version directly inside ``store``, else raise
    ``ArtifactRejected``. Looks at names and at the entry's own metadata only (``lstat``):
    nothing is opened, so a path from a message is judged before anything is read.

    >>> version_in_store("/m/store/20260101T000000Z-ab", "/m/store").name
    '20260101T000000Z-ab'
    >>> try:
    ...     version_in_store("/m/store/../../etc", "/m/store")
    ... except ArtifactRejected as exc:
    ...     print(exc.reason)
    path traversal: '/m/store/../../etc' has a '..' component
    """
    raw = str(path)
    if "\x00" in raw:
        raise ArtifactRejected("path contains a NUL byte", raw)
    if ".." in Path(raw).parts:
        raise ArtifactRejected(f"path traversal: {raw!r} has a '..' component", raw)
    absolute = Path(os.path.abspath(raw))
    root, real_root = Path(os.path.abspath(store)), Path(os.path.realpath(store))
    if absolute.parent not in (root, real_root):
        raise ArtifactRejected(f"{raw} is outside the model store {root}", raw)
    if absolute.name.startswith("."):
        raise ArtifactRejected(f"{absolute.name} is hidden (a version still being written)", raw)
    if absolute.is_symlink():
        raise ArtifactRejected(
            f"{absolute.name} is a symbolic link (a version must be a directory in the store)", raw
        )
    return absolute


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


def _holdout_json(cases: Sequence[EvalCase], max_len: int, seed: int = 0) -> dict[str, Any]:
    """At most ``HOLDOUT_CASES`` of ``cases``, drawn uniformly (seeded), prefixes cut to the
    ``max_len`` items the model reads; ``of`` is how many there were."""
    if not cases:
        raise ValueError("no held-out test cases: the version's metrics could not be checked")
    count = min(HOLDOUT_CASES, len(cases))
    picked = sorted(np.random.default_rng(seed).choice(len(cases), size=count, replace=False))
    rows = [
        {
            "prefix": list(cases[i].prefix[-max_len:]),
            "target": cases[i].target,
            "exclude": list(cases[i].exclude),
        }
        for i in picked
    ]
    return {"of": len(cases), "cases": rows}


def save_artifact(
    model: Any,
    store: Path | str,
    manifest_fields: dict[str, Any],
    smoke_prefix: list[str] | None = None,
    now: dt.datetime | None = None,
    *,
    holdout: Sequence[EvalCase],
) -> Path:
    """Write ``model`` (a ``SessionModel``) as a new version in ``store``; return its directory.

    ``manifest_fields`` (dataset, data range, metrics, hyper-parameters, training time...) are
    stored as given; this function adds format, version, creation time, file hashes, the smoke
    check and the content hash. ``holdout``: the test cases the metrics were measured on; a
    sample ships with the version so that the loader can measure them again.
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
        (tmp / HOLDOUT_FILE).write_text(
            json.dumps(_holdout_json(holdout, model.max_len), separators=(",", ":")),
            encoding="utf-8",
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


def _open_version(folder: Path) -> int:
    """A descriptor of the version directory itself, never of a symbolic link's target."""
    try:
        return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise ArtifactRejected("no such version directory", folder) from None
    except OSError as exc:
        if folder.is_symlink():
            raise ArtifactRejected(
                "the version directory is a symbolic link (a version must be a directory "
                "in the store)",
                folder,
            ) from None
        raise ArtifactRejected(f"version directory unreadable: {exc.strerror}", folder) from None


def _read_member(dir_fd: int, name: str, folder: Path) -> bytes | None:
    """One file of the version, read once (None when absent): no symbolic link is followed,
    nothing but a regular file is read (a FIFO would block the loader), at most MAX_FILE_BYTES."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ArtifactRejected(
                f"{name} is a symbolic link (artifact files must be regular files in the "
                "version directory)",
                folder,
            ) from None
        raise ArtifactRejected(f"{name} unreadable: {exc.strerror}", folder) from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ArtifactRejected(f"{name} is not a regular file", folder)
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ArtifactRejected(f"{name} is larger than {MAX_FILE_BYTES} bytes", folder)
    return data


def _parse_manifest(raw: bytes | None, folder: Path) -> dict[str, Any]:
    if raw is None:
        raise ArtifactRejected("missing manifest.json", folder)
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactRejected(f"manifest.json is not valid JSON: {exc}", folder) from None
    if not isinstance(manifest, dict):
        raise ArtifactRejected("manifest.json is not a JSON object", folder)
    if manifest.get("format") == FORMAT_WITHOUT_HOLDOUT:
        raise ArtifactRejected(
            f"format {FORMAT_WITHOUT_HOLDOUT} ships no held-out cases, so its metrics cannot "
            "be checked (retrain to replace it)",
            folder,
        )
    if manifest.get("format") != FORMAT:
        raise ArtifactRejected(f"unknown format {manifest.get('format')!r} (want {FORMAT})", folder)
    if manifest.get("content_hash") != content_hash(manifest):
        raise ArtifactRejected(
            "manifest content hash mismatch (manifest edited or damaged)", folder
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or set(files) != set(ARTIFACT_FILES):
        raise ArtifactRejected(f"manifest must list hashes for {', '.join(ARTIFACT_FILES)}", folder)
    return manifest


def _verified(folder: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest and the bytes of each file it hashes, each read once and checked; the
    caller uses these bytes, never the files again, so what was hashed is what is loaded."""
    dir_fd = _open_version(folder)
    try:
        manifest = _parse_manifest(_read_member(dir_fd, MANIFEST_FILE, folder), folder)
        blobs: dict[str, bytes] = {}
        for name in ARTIFACT_FILES:
            data = _read_member(dir_fd, name, folder)
            if data is None:
                raise ArtifactRejected(f"missing {name}", folder)
            if hashlib.sha256(data).hexdigest() != manifest["files"][name]:
                raise ArtifactRejected(
                    f"hash mismatch for {name} (file changed or corrupted)", folder
                )
            blobs[name] = data
    finally:
        os.close(dir_fd)
    return manifest, blobs


def read_manifest(path: Path | str) -> dict[str, Any]:
    """Parse and check a version's manifest and file hashes (no TensorFlow involved)."""
    return _verified(Path(path))[0]


def _keras_objects(node: Any) -> Iterator[tuple[Any, Any, Any]]:
    """Every ``(module, class_name, registered_name)`` a Keras config names, depth first."""
    if isinstance(node, dict):
        if "class_name" in node:
            yield node.get("module"), node["class_name"], node.get("registered_name")
        for value in node.values():
            yield from _keras_objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from _keras_objects(value)


def _check_keras_archive(data: bytes, folder: Path) -> None:
    """Refuse an archive that is not our network's before Keras reads a byte of it: members,
    unpacked size, and every object its config names (pure JSON, nothing is executed)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            extra = sorted({info.filename for info in infos} - KERAS_MEMBERS)
            if extra:
                raise ArtifactRejected(f"model.keras holds unexpected files: {extra}", folder)
            if sum(info.file_size for info in infos) > MAX_FILE_BYTES:
                raise ArtifactRejected(
                    f"model.keras unpacks to over {MAX_FILE_BYTES} bytes", folder
                )
            config = json.loads(archive.read("config.json").decode("utf-8"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise ArtifactRejected(
            f"model.keras is not a readable Keras archive: {exc}", folder
        ) from None
    unknown = sorted({o for o in _keras_objects(config) if o not in KERAS_OBJECTS}, key=str)
    if unknown:
        names = ", ".join(".".join(p for p in o[:2] if p) for o in unknown[:5])
        raise ArtifactRejected(
            f"model.keras names objects outside the session network: {names} (Lambda, custom "
            "and unknown layers are refused before Keras reads the file)",
            folder,
        )


def _keras_model(data: bytes, folder: Path) -> Any:
    """The verified bytes, checked, then loaded by Keras in safe mode from a private copy."""
    from models.session._tf import keras

    _check_keras_archive(data, folder)
    k = keras()
    with tempfile.TemporaryDirectory(prefix="streamrec-load-") as tmp:
        copy = Path(tmp) / MODEL_FILE
        copy.write_bytes(data)
        try:
            return k.models.load_model(copy, compile=False, safe_mode=True)
        except Exception as exc:  # Keras raises many types for a bad or unsafe file
            raise ArtifactRejected(
                f"model.keras refused by Keras safe-mode load: {exc}", folder
            ) from None


def load_session_model(path: Path | str, smoke: bool = True) -> Any:
    """Verify and load one version directory as a ``SessionModel``; raise ``ArtifactRejected``.

    ``smoke`` runs the prediction checks (the smoke prefix, the held-out metrics); only a tool
    that inspects a version turns it off. Heavy (imports TensorFlow, reads the model): the worker
    calls it from an executor.
    """
    folder = Path(path)
    manifest, blobs = _verified(folder)
    try:
        vocab = Vocabulary.from_json_dict(json.loads(blobs[VOCAB_FILE].decode("utf-8")))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactRejected(f"vocab.json unreadable: {exc}", folder) from None
    if vocab.size != manifest.get("vocab_size"):
        raise ArtifactRejected(
            f"vocabulary mismatch: vocab.json has {vocab.size} indices, "
            f"manifest says {manifest.get('vocab_size')}",
            folder,
        )

    from models.session.network import OutputHead
    from models.session.serving import SessionModel

    encoder = _keras_model(blobs[MODEL_FILE], folder)
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
        model.holdout_cases, model.holdout_metrics = _holdout_check(
            model, manifest, blobs[HOLDOUT_FILE], folder
        )
    return model


def _holdout_cases(raw: bytes, folder: Path) -> tuple[list[EvalCase], int]:
    """The shipped cases and how many test cases they were drawn from."""
    try:
        spec = json.loads(raw.decode("utf-8"))
        rows, population = spec["cases"], int(spec["of"])
        cases = [
            EvalCase(
                tuple(str(i) for i in row["prefix"]),
                str(row["target"]),
                tuple(str(i) for i in row.get("exclude", ())),
            )
            for row in rows
        ]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ArtifactRejected(f"holdout.json unreadable: {exc!r}", folder) from None
    if not 0 < len(cases) <= min(HOLDOUT_CASES, population):
        raise ArtifactRejected(
            f"holdout.json must hold 1 to {HOLDOUT_CASES} of its {population} cases, "
            f"not {len(cases)}",
            folder,
        )
    return cases, population


def _holdout_check(
    model: Any, manifest: dict[str, Any], raw: bytes, folder: Path
) -> tuple[list[EvalCase], dict[str, float]]:
    """The gate trusts the manifest's test metrics only as far as the model reaches them on the
    shipped cases: each claim may exceed the measurement by HOLDOUT_Z standard errors (a bound:
    per-case values lie in [0, 1], so variance <= m(1-m); none when every case shipped).
    Returns the cases and what the model reached on them (the gate holds the serving version
    against the same figures)."""
    from models.session.serving import MIN_BUCKET

    cases, population = _holdout_cases(raw, folder)
    claims = {k: v for k, v in manifest_metrics(manifest)[0].items() if k in REPORTED}
    if not claims:
        return cases, {}  # nothing claimed: the gate refuses such a manifest itself
    try:
        # In rows of the bucket the smoke check compiled: no second XLA compile (half the cost).
        measured = evaluate(model, cases, model.vocabulary, batch_size=MIN_BUCKET)
    except Exception as exc:
        raise ArtifactRejected(f"held-out check failed: {exc}", folder) from None
    n = len(cases)
    unsampled = math.sqrt(1.0 - n / population)  # finite-population correction
    for name, claim in sorted(claims.items()):
        got = measured[name]
        slack = HOLDOUT_Z * math.sqrt(got * (1.0 - got) / n) * unsampled + 2.0 / n
        if claim > got + slack:
            raise ArtifactRejected(
                f"manifest claims {name} {claim:.4g} but the model reaches {got:.4g} on its "
                f"{n} held-out test cases (at most {slack:.2g} less allowed)",
                folder,
            )
    return cases, measured


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
