"""The serving session model and its hot swap: load, gate, swap between batches, remember refusals.

Each micro-batch takes ``slot.current()`` once and uses that object throughout; a swap replaces
the reference under a lock, so a batch never sees half a model and no batch waits for a swap.
Offers (the ``model-updates`` topic, a timer over the model store) load, smoke-test and gate the
candidate in an executor so the event loop keeps consuming. A path that is not a version
directly inside the model store is refused before anything is opened; a candidate that fails to
load or fails the gate is refused and the serving version keeps serving. Refusals and swaps go
into the store's ledger (``models.session.store``), so a restarted worker neither retries a
refused version nor forgets the last accepted one; the ledger's pin and rollbacks are obeyed at
each poll. Rules: docs/stream.md, "The session-model gate" and "The model store over time".
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from models.session.artifacts import ArtifactRejected, version_in_store
from models.session.gate import GATE_METRICS, GatePolicy, HeadToHead, head_to_head, quality_gate
from models.session.store import (
    Ledger,
    Verdict,
    fallback,
    list_versions,
    newest_candidate,
    read_ledger,
    update_ledger,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one offer."""

    version: str
    path: str
    accepted: bool
    reason: str
    at_ms: int
    #: what asked: ``start``, ``poll`` (the model store) or ``update`` (the topic)
    trigger: str = ""


def _default_loader(path: Path) -> Any:
    from models.session.artifacts import load_session_model

    return load_session_model(path)


def _paired(candidate: Any, serving: Any) -> HeadToHead | None:
    """The serving version scored on the candidate's held-out cases, next to the candidate's
    own figures on them (the loader measured those); None when either is missing (a model
    from elsewhere than the loader: the gate then compares the manifests)."""
    cases = getattr(candidate, "holdout_cases", None)
    measured = getattr(candidate, "holdout_metrics", None)
    if serving is None or not cases or not measured:
        return None
    from models.session.serving import MIN_BUCKET

    return head_to_head(candidate, serving, cases, batch_size=MIN_BUCKET, measured=measured)


def _version_of(model: Any, path: Path) -> str:
    manifest = getattr(model, "manifest", None) or {}
    version = manifest.get("version") if isinstance(manifest, Mapping) else None
    return str(version) if version else path.name


def newest_in_store(model_store: Path | str) -> Path | None:
    """The newest complete version directory in the store (names sort by creation time; hidden
    in-progress directories and folders without a manifest are skipped). Not yet verified.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("20260101T000000Z-aa", "20260102T000000Z-bb", ".incoming-x"):
    ...     (root / name).mkdir(); _ = (root / name / "manifest.json").write_text("{}")
    >>> newest_in_store(root).name, newest_in_store(root / "missing")
    ('20260102T000000Z-bb', None)
    """
    root = Path(model_store)
    if not root.is_dir():
        return None
    versions = sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / "manifest.json").is_file()
    )
    return versions[-1] if versions else None


class ModelSlot:
    """Holds the serving session model; swaps it atomically when a better version is offered.

    Examples
    --------
    >>> class Fake:
    ...     def __init__(self, version, mrr):
    ...         self.manifest = {"version": version, "metrics": {
    ...             "test": {"recall@20": 0.3, "mrr@20": mrr},
    ...             "baselines": {"pop": {"recall@20": 0.1, "mrr@20": 0.01}}}}
    >>> models = {"/m/v1": Fake("v1", 0.10), "/m/v2": Fake("v2", 0.05)}
    >>> slot = ModelSlot(loader=lambda p: models[str(p)])
    >>> slot.offer("/m/v1").accepted, slot.version
    (True, 'v1')
    >>> slot.offer("/m/v2").accepted, slot.version, sorted(slot.refused)
    (False, 'v1', ['v2'])
    """

    def __init__(
        self,
        loader: Callable[[Path], Any] | None = None,
        policy: GatePolicy = GatePolicy(),
        clock: Callable[[], float] = time.time,
        on_decision: Callable[[Decision], None] | None = None,
        store: Path | str | None = None,
    ) -> None:
        self.loader = loader or _default_loader
        #: the model store: an offer of anything but a version directly inside it is refused
        #: before anything is opened. Unset, the first :meth:`offer_newest` sets it (the worker
        #: polls its store at start), and until then a path from a message is refused.
        self.store = None if store is None else Path(store)
        #: told of every decision as it is made (the worker journals them for the dashboard);
        #: an exception it raises is logged, never the offer's
        self.on_decision = on_decision
        self.policy = policy
        self.clock = clock
        self._model: Any = None
        self._version: str | None = None
        self._swap_lock = threading.Lock()  # guards the (model, version) pair
        self._offer_lock = threading.Lock()  # one load at a time (memory: two models at most)
        #: version (or directory name when the manifest was unreadable) -> refusal
        self.refused: dict[str, Decision] = {}
        #: every decision, oldest first
        self.history: list[Decision] = []

    def current(self) -> Any:
        """The serving model (None before the first accepted version). Take it once per batch."""
        with self._swap_lock:
            return self._model

    @property
    def version(self) -> str | None:
        with self._swap_lock:
            return self._version

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _outside_store(self, path: Path, trigger: str) -> str | None:
        """Why ``path`` must not be opened at all, or None."""
        if self.store is None:
            if trigger == "update":
                return "no model store known yet to check a path from a message against"
            return None  # a caller that names a path without a store chose it itself
        try:
            version_in_store(path, self.store)
        except ArtifactRejected as exc:
            return exc.reason
        return None

    def _decide(
        self,
        version: str,
        path: Path,
        accepted: bool,
        reason: str,
        trigger: str,
        remember: bool = True,
    ) -> Decision:
        decision = Decision(version, str(path), accepted, reason, self._now_ms(), trigger)
        self.history.append(decision)
        if accepted or remember:
            self._write_ledger(decision)
        if self.on_decision is not None:
            try:
                self.on_decision(decision)
            except Exception as exc:
                log.warning("session model decision %s not journaled: %r", version, exc)
        if not accepted:
            if remember:
                self.refused[version] = decision
            log.warning(
                "session model %s refused (%s); still serving %s", version, reason, self._version
            )
        return decision

    def _write_ledger(self, decision: Decision) -> None:
        """A swap or a remembered refusal into the store's ledger; a failure to write is logged
        (the decision stands in memory; a restart may then offer the version again)."""
        if self.store is None:
            return
        verdict = Verdict(decision.reason, decision.at_ms)
        version = decision.version

        def change(ledger: Ledger) -> Ledger:
            if decision.accepted:
                return replace(
                    ledger, accepted={**ledger.accepted, version: verdict}, serving=version
                )
            return replace(ledger, refused={**ledger.refused, version: verdict})

        try:
            update_ledger(self.store, change)
        except OSError as exc:
            log.warning("session model %s: ledger not written: %r", version, exc)

    def offer(
        self, path: Path | str, trigger: str = "", compare: bool = True, pinned: bool = False
    ) -> Decision:
        """Load, gate and (if it passes) swap in the version at ``path``. Blocking and CPU-heavy:
        from the event loop call :meth:`offer_async`. ``compare`` False gates it as if nothing
        served (a fallback must not be measured against the version it replaces); ``pinned``
        skips the quality gate (the operator's choice), never the loader's verification."""
        path = Path(path)
        with self._offer_lock:
            outside = self._outside_store(path, trigger)
            if outside is not None:  # a verdict on the path, not on a version: not remembered
                refusal = f"refused unopened: {outside}"
                return self._decide(path.name, path, False, refusal, trigger, remember=False)
            store = self.store
            held = None if pinned or store is None else read_ledger(store).pinned
            if held and store and held != path.name and (store / held).is_dir():  # a pin wins
                held_back = f"not swapped in: {held} is pinned"
                return self._decide(path.name, path, False, held_back, trigger, remember=False)
            known = self.refused.get(path.name)
            if known is not None:
                return known
            if path.name == self.version:
                return Decision(path.name, str(path), False, "already serving", self._now_ms())
            try:
                candidate = self.loader(path)
            except Exception as exc:  # ArtifactRejected, or anything a broken file raises
                reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
                return self._decide(path.name, path, False, f"load failed: {reason}", trigger)
            version = _version_of(candidate, path)
            if version == self.version:
                return Decision(version, str(path), False, "already serving", self._now_ms())
            if version in self.refused:
                return self.refused[version]
            if not pinned:  # a pin skips the gate: the serving version is not scored for it
                gate = self._gate(candidate, self.current() if compare else None)
                if gate is not None:
                    return self._decide(version, path, False, f"quality gate: {gate}", trigger)
            with self._swap_lock:
                old = self._version
                self._model, self._version = candidate, version
            log.info("session model %s -> %s (%s)", old or "none", version, path)
            how = " (pinned)" if pinned else "" if compare else " (fallback)"
            return self._decide(
                version, path, True, f"swapped in{how}, replacing {old or 'none'}", trigger
            )

    def _gate(self, candidate: Any, serving: Any) -> str | None:
        """The quality gate's word on ``candidate`` against ``serving`` (None: nothing serves,
        or a fallback, which is not measured against the version it replaces)."""
        serving_manifest = getattr(serving, "manifest", None) if serving is not None else None
        return quality_gate(
            getattr(candidate, "manifest", {}) or {},
            serving_manifest,
            self.policy,
            _paired(candidate, serving),
        )

    def _sync(self, ledger: Ledger) -> Ledger:
        """Take the ledger's refusals (other workers', the operator's rollbacks) into memory,
        drop a refusal the operator withdrew by pinning; the ledger as this slot sees it."""
        for version, verdict in ledger.refused.items():
            if version not in self.refused:
                path = str((self.store or Path()) / version)
                self.refused[version] = Decision(
                    version, path, False, verdict.reason, verdict.at_ms, "ledger"
                )
        if ledger.pinned is not None and ledger.pinned not in ledger.refused:
            self.refused.pop(ledger.pinned, None)
        mine = {v: Verdict(d.reason, d.at_ms) for v, d in self.refused.items()}
        return replace(ledger, refused={**mine, **ledger.refused})

    def offer_newest(self, model_store: Path | str, trigger: str = "poll") -> Decision | None:
        """Follow the store: the pinned version if there is one; else, when nothing serves or
        the serving version is refused or gone, the last accepted one (the fallback); then the
        newest version never refused, if newer than the serving one, through the gate."""
        if self.store is None:
            self.store = Path(model_store)
        root = Path(model_store)
        versions = list_versions(root)
        ledger = self._sync(read_ledger(root))
        if ledger.pinned in versions:
            if ledger.pinned == self.version or ledger.pinned in self.refused:
                return None
            return self.offer(root / ledger.pinned, trigger, pinned=True)
        current, decision = self.version, None
        if current is None or current in ledger.refused or current not in versions:
            back = fallback(versions, ledger, exclude=current)
            if back is not None:
                decision = self.offer(root / back, trigger, compare=False)
        newest = newest_candidate(versions, ledger)
        serving = self.version
        if newest is None or newest in self.refused:
            return decision
        if serving is None or (newest > serving and newest != serving):
            return self.offer(root / newest, trigger)
        return decision

    async def offer_async(
        self, path: Path | str, executor: Executor | None = None, trigger: str = "update"
    ) -> Decision:
        """:meth:`offer` in an executor, so loading never blocks the consumer's event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, self.offer, path, trigger)

    async def offer_newest_async(
        self, model_store: Path | str, executor: Executor | None = None, trigger: str = "poll"
    ) -> Decision | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, self.offer_newest, model_store, trigger)


#: the gate lives with the session model (``models.session.gate``) so the replay shares it
__all__ = ["GATE_METRICS", "Decision", "GatePolicy", "ModelSlot", "newest_in_store", "quality_gate"]
