"""The model store over time: its versions, its ledger (``store.json``: the versions accepted and
refused with the reason, the operator's pin, the version the workers last swapped in), which
version should serve, and the retention of the last K versions.

The ledger lives in the store, not in Redis: Redis is a cache the worker rebuilds and runs without
persistence, while a refusal is a fact about a version that must outlive the worker and Redis,
and the store is the one volume the trainer, the workers and ``streamrec models`` share. Writes
are atomic (a temporary file renamed) under a lock file, so two writers never lose an entry.
Rules: docs/stream.md, "The model store over time".
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LEDGER_FILE = "store.json"
LOCK_FILE = ".store.lock"
#: What ``rollback`` writes as the refusal of the version it takes out of service.
ROLLBACK_REASON = "rolled back by the operator"


@dataclass(frozen=True, slots=True)
class Verdict:
    """One decision on a version: why, and when (epoch ms)."""

    reason: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class Ledger:
    """What the store remembers about its versions beside their files.

    >>> ledger = Ledger(accepted={"v1": Verdict("swapped in", 1)}, pinned="v1")
    >>> Ledger.from_json(ledger.to_json()) == ledger
    True
    """

    accepted: Mapping[str, Verdict] = field(default_factory=dict)
    refused: Mapping[str, Verdict] = field(default_factory=dict)
    pinned: str | None = None
    serving: str | None = None

    def to_json(self) -> dict[str, Any]:
        def rows(verdicts: Mapping[str, Verdict]) -> dict[str, Any]:
            return {v: {"reason": d.reason, "at_ms": d.at_ms} for v, d in sorted(verdicts.items())}

        return {
            "accepted": rows(self.accepted),
            "refused": rows(self.refused),
            "pinned": self.pinned,
            "serving": self.serving,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Ledger:
        def rows(raw: Any) -> dict[str, Verdict]:
            if not isinstance(raw, Mapping):
                return {}
            return {
                str(v): Verdict(str(d.get("reason", "")), int(d.get("at_ms", 0)))
                for v, d in raw.items()
                if isinstance(d, Mapping)
            }

        pinned, serving = doc.get("pinned"), doc.get("serving")
        return cls(
            accepted=rows(doc.get("accepted")),
            refused=rows(doc.get("refused")),
            pinned=str(pinned) if pinned else None,
            serving=str(serving) if serving else None,
        )


def list_versions(root: Path | str) -> list[str]:
    """The complete versions in the store, oldest first (names sort by creation time; hidden
    in-progress directories and folders without a manifest are skipped)."""
    folder = Path(root)
    if not folder.is_dir():
        return []
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / "manifest.json").is_file()
    )


def read_ledger(root: Path | str) -> Ledger:
    """The store's ledger; an absent one is empty, and so is a damaged one (logged): a worker
    must keep serving, and the next write replaces it."""
    path = Path(root) / LEDGER_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Ledger()
    except (OSError, ValueError) as exc:
        log.warning("model store ledger %s unreadable, taken as empty: %s", path, exc)
        return Ledger()
    return Ledger.from_json(doc) if isinstance(doc, Mapping) else Ledger()


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with (root / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _write(root: Path, ledger: Ledger) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".ledger-", dir=root)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(ledger.to_json(), handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, root / LEDGER_FILE)


def update_ledger(root: Path | str, change: Callable[[Ledger], Ledger]) -> Ledger:
    """Read, ``change`` and write the ledger under the store's lock; the new ledger."""
    folder = Path(root)
    with _locked(folder):
        ledger = change(read_ledger(folder))
        _write(folder, ledger)
    return ledger


def fallback(versions: Sequence[str], ledger: Ledger, exclude: str | None = None) -> str | None:
    """The newest version in ``versions`` that was accepted and is not refused since.

    >>> ok, no = Verdict("swapped in", 1), Verdict("rolled back", 2)
    >>> fallback(["v1", "v2", "v3"], Ledger(accepted={"v1": ok, "v2": ok}, refused={"v2": no}))
    'v1'
    """
    for version in reversed(versions):
        if version in ledger.accepted and version not in ledger.refused and version != exclude:
            return version
    return None


def newest_candidate(versions: Sequence[str], ledger: Ledger) -> str | None:
    """The newest version never refused: what the gate is offered next.

    >>> newest_candidate(["v1", "v2"], Ledger(refused={"v2": Verdict("bad", 1)}))
    'v1'
    """
    for version in reversed(versions):
        if version not in ledger.refused:
            return version
    return None


def expired(versions: Sequence[str], keep: int, ledger: Ledger) -> list[str]:
    """The versions retention deletes: all but the newest ``keep``, never the pinned one, the
    one the workers serve, nor the fallback (where a worker goes when its version is refused).

    >>> ok = Verdict("swapped in", 1)
    >>> expired(["v1", "v2", "v3", "v4"], 2, Ledger(accepted={"v1": ok}))
    ['v2']
    """
    if keep <= 0:
        return []
    protected = {ledger.pinned, ledger.serving, fallback(versions, ledger)}
    return [v for v in versions[:-keep] if v not in protected]


def prune(root: Path | str, keep: int) -> list[str]:
    """Delete the versions :func:`expired` names, and forget them in the ledger; the deleted."""
    folder = Path(root)
    with _locked(folder):
        ledger = read_ledger(folder)
        doomed = expired(list_versions(folder), keep, ledger)
        for version in doomed:
            shutil.rmtree(folder / version, ignore_errors=True)
        gone = set(doomed)
        kept = replace(
            ledger,
            accepted={v: d for v, d in ledger.accepted.items() if v not in gone},
            refused={v: d for v, d in ledger.refused.items() if v not in gone},
        )
        _write(folder, kept)
    for version in doomed:
        log.info("model store: deleted %s (keeping the last %d versions)", version, keep)
    return doomed


class StoreError(ValueError):
    """An operator's command the store's state does not allow; the message says why."""


def pinned_to(ledger: Ledger, versions: Sequence[str], version: str) -> Ledger:
    """``version`` pinned: it serves whatever is newer, and a refusal of it is withdrawn (the
    operator's word; loading still verifies it, and a version that fails is refused again)."""
    if version not in versions:
        raise StoreError(f"no version {version!r} in the store")
    refused = {v: d for v, d in ledger.refused.items() if v != version}
    return replace(ledger, pinned=version, refused=refused)


def rolled_back(ledger: Ledger, versions: Sequence[str], at_ms: int) -> tuple[Ledger, str, str]:
    """(the ledger with the serving version refused and unpinned, that version, the accepted
    one the workers fall back to); raises ``StoreError`` when there is nothing to roll back to.

    >>> ok = Verdict("swapped in", 1)
    >>> led = Ledger(accepted={"v1": ok, "v2": ok}, serving="v2", pinned="v2")
    >>> new, out, back = rolled_back(led, ["v1", "v2"], 5)
    >>> out, back, new.pinned, new.refused["v2"].reason
    ('v2', 'v1', None, 'rolled back by the operator')
    """
    out = ledger.serving
    if out is None:
        raise StoreError("no version is serving (no worker has swapped one in)")
    back = fallback(versions, ledger, exclude=out)
    if back is None:
        raise StoreError(f"{out} serves and no earlier accepted version is left to fall back to")
    refused = {**ledger.refused, out: Verdict(ROLLBACK_REASON, at_ms)}
    pinned = None if ledger.pinned == out else ledger.pinned
    return replace(ledger, refused=refused, pinned=pinned), out, back
