"""The whole system in one process: the stream model, a session model retrained in stream time,
the worker's gate and the worker's blend, behind the evaluator's ``learn_one`` / ``rank``.

``SessionTrainer`` is the periodic trainer replayed: every ``every_ms`` of stream time it fits
the session component (:class:`models.session.blend.SessionBlend`) on a sliding window of the
events seen so far and offers it to :func:`models.session.gate.quality_gate`, which swaps it in
or keeps the serving one (scored on the candidate's test cases, as the worker scores it on the
candidate's held-out ones). ``SystemModel`` ranks as the worker does: the stream model's list,
then :func:`models.online.stream.session.blend_sessions`. It also ranks the blend's variants
(``session_slots``) and the online model alone, read back through :meth:`SystemModel.view`.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from models.events import DEFAULT_FEEDBACK, Feedback, Interaction
from models.online.stream import StreamModel
from models.online.stream.scoring import Recommendation
from models.online.stream.session import SESSION_SLOTS, ServingSessionModel, blend_sessions
from models.session.gate import GatePolicy, head_to_head, quality_gate

log = logging.getLogger(__name__)

#: the worker's defaults (``OnlineScorer``): the prefix it sends and the places it gives
SESSION_LEN = 10


@dataclass(frozen=True, slots=True)
class Swap:
    """One offer of a retrained session component: where in the stream, and the gate's word."""

    version: str
    at_ms: int
    event: int
    trials_before: int
    window_events: int
    accepted: bool
    reason: str
    metrics: dict[str, float]
    weights: dict[str, float]
    train_s: float

    def to_json_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def _manifest(version: str, exp: Any) -> dict[str, Any]:
    """The manifest the gate reads: the blend's test metrics against every baseline's."""
    baselines = {n: m for n, m in {**exp.models, **exp.extra}.items() if n not in ("gru",)}
    baselines.pop("session_blend", None)
    return {
        "version": version,
        "metrics": {"test": exp.extra["session_blend"]},
        "baselines": baselines,
    }


@dataclass(slots=True)
class SessionTrainer:
    """Retrains the session component every ``every_ms`` of stream time on the last
    ``window_ms`` of positive events (at least ``min_events`` of them), gated as the worker
    gates. ``config`` is the GRU's (``None``: the blend of the baselines alone, no GRU)."""

    every_ms: int
    window_ms: int
    config: Any = None
    gap_s: float = 1800.0
    min_events: int = 2000
    policy: GatePolicy = field(default_factory=GatePolicy)
    feedback: Feedback = DEFAULT_FEEDBACK
    #: the serving component and its manifest (None before the first accepted one)
    model: ServingSessionModel | None = None
    manifest: dict[str, Any] | None = None
    swaps: list[Swap] = field(default_factory=list)
    window: deque[Interaction] = field(default_factory=deque)
    next_ms: int | None = None
    seen: int = 0

    def observe(self, event: Interaction, trials: int = 0) -> None:
        """A new event of the stream: into the window; a retrain when its time has come."""
        self.seen += 1
        if self.feedback.is_negative(event):
            return
        now = event.timestamp_ms
        self.window.append(event)
        while self.window and self.window[0].timestamp_ms < now - self.window_ms:
            self.window.popleft()
        if self.next_ms is None:
            self.next_ms = now + self.every_ms
        if now >= self.next_ms:
            self.next_ms = now + self.every_ms
            if len(self.window) >= self.min_events:
                self.retrain(now, trials)

    def retrain(self, now_ms: int, trials: int) -> Swap | None:
        """Fit on the window, offer to the gate, swap when it passes; the offer recorded."""
        from models.session.experiment import run_experiment

        version = f"replay-{len(self.swaps) + 1}"
        started = time.perf_counter()
        try:
            exp = run_experiment(
                list(self.window),
                "replay",
                "session",
                self.config,
                gap_s=self.gap_s,
                train_gru_model=self.config is not None,
            )
        except ValueError as exc:  # too little data in the window for a split
            log.warning("no session model at %d: %s", now_ms, exc)
            return None
        manifest = _manifest(version, exp)
        paired = None
        if self.model is not None:  # the serving one on the candidate's test cases
            measured = exp.extra["session_blend"]
            paired = head_to_head(exp.blend, self.model, exp.split.test, measured=measured)
        reason = quality_gate(manifest, self.manifest, self.policy, paired)
        swap = Swap(
            version,
            now_ms,
            self.seen,
            trials,
            len(self.window),
            reason is None,
            reason
            or f"swapped in, replacing {self.manifest['version'] if self.manifest else 'none'}",
            {m: exp.extra["session_blend"][m] for m in ("recall@20", "mrr@20")},
            dict(exp.blend.weights),
            round(time.perf_counter() - started, 2),
        )
        self.swaps.append(swap)
        log.info("%s at %d: %s", version, now_ms, swap.reason)
        if reason is None:
            exp.blend.manifest = manifest
            self.model, self.manifest = exp.blend, manifest
        return swap


class _Fixed:
    """One row's session recommendations, asked once and handed to each variant's blend (the
    top ``k`` of a longer list are the list for ``k``)."""

    def __init__(self, items: list[tuple[str, float]]) -> None:
        self.items = items

    def recommend(
        self,
        prefixes: Sequence[Sequence[str]],
        k: int,
        exclude: Sequence[Iterable[str]] | None = None,
    ) -> list[list[tuple[str, float]]]:
        return [self.items[:k] for _ in prefixes]


class SystemModel:
    """The stream model with the session component blended in as the worker blends it.

    ``slots``: the variants ranked at every trial (places given to the session model; 0 is
    the online model alone); ``rank`` returns the ``primary`` one's list. The others are read
    through :meth:`view`, which must come after this model in the evaluator's order.
    """

    reads_feedback = True

    def __init__(
        self,
        stream: StreamModel,
        trainer: SessionTrainer,
        slots: Sequence[int] = (0, SESSION_SLOTS),
        primary: int = SESSION_SLOTS,
        session_len: int = SESSION_LEN,
    ) -> None:
        self.stream = stream
        self.trainer = trainer
        self.slots = tuple(sorted(set(slots) | {primary}))
        self.primary = primary
        self.session_len = session_len
        self.trials = 0
        self.last: tuple[str, int | None, dict[int, list[str]]] | None = None

    def learn_one(self, event: Interaction) -> None:
        self.stream.learn_one(event)
        self.trainer.observe(event, self.trials)

    def ranked(self, user_id: str, k: int, now_ms: int | None) -> dict[int, list[str]]:
        """Every variant's top-``k``: the CF list, then the worker's blend with each slots."""
        cf: list[Recommendation] = self.stream.recommend(user_id, k, now_ms)
        out = {0: [r.item_id for r in cf]}
        model = self.trainer.model
        wanted = [s for s in self.slots if s > 0]
        if model is None or not wanted:
            return {s: out[0] for s in self.slots}
        history = self.stream.histories.get(user_id, [])
        unseen = [*history, *self.stream.excluded.get(user_id, ())]
        prefix = history[-self.session_len :]
        items = model.recommend([prefix], max(wanted), exclude=[unseen])[0] if prefix else []
        for slots in wanted:
            blended = blend_sessions(
                _Fixed(items), [history], [unseen], [cf], k, self.session_len, slots
            )
            out[slots] = [r.item_id for r in blended[0]]
        return out

    def rank(self, user_id: str, k: int = 10, now_ms: int | None = None) -> list[str]:
        self.trials += 1
        lists = self.ranked(user_id, k, now_ms)
        self.last = (user_id, now_ms, lists)
        return lists[self.primary]

    def view(self, slots: int) -> SystemView:
        return SystemView(self, slots)


class SystemView:
    """One variant of a :class:`SystemModel`: its list of the trial the system just ranked;
    it learns nothing (the system learns each event once)."""

    def __init__(self, system: SystemModel, slots: int) -> None:
        if slots not in system.slots:
            raise ValueError(f"the system does not rank {slots} session slots")
        self.system = system
        self.slots = slots

    def learn_one(self, event: Interaction) -> None:
        return None

    def rank(self, user_id: str, k: int = 10, now_ms: int | None = None) -> list[str]:
        last = self.system.last
        if last is None or last[:2] != (user_id, now_ms):
            raise RuntimeError("a view ranks the trial its system ranked just before it")
        return last[2][self.slots][:k]
