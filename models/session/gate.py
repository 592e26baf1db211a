"""The session-model quality gate: may a candidate version replace the serving one?

One rule for the worker's model slot and for ``streamrec evaluate --system``'s replay, so the
swaps the replay reports are the ones the worker would make. The candidate is held against the
serving version on the candidate's own test cases (:class:`HeadToHead`) wherever both can be
scored: each manifest's metrics come from its own window, and on a drifting stream an older
window's figures froze the serving version (docs/experiments.md). The rules: docs/stream.md,
"The session-model gate".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from models.session.artifacts import manifest_metrics
from models.session.data import EvalCase
from models.session.evaluation import evaluate

GATE_METRICS: tuple[str, ...] = ("recall@20", "mrr@20")


@dataclass(frozen=True, slots=True)
class GatePolicy:
    """The quality gate's configuration.

    ``tolerance`` is relative: 0.05 lets a candidate be up to 5 % below the serving version.
    """

    tolerance: float = 0.05
    metrics: tuple[str, ...] = GATE_METRICS
    require_baselines: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.tolerance < 1.0:
            raise ValueError("tolerance must be in [0, 1)")


@dataclass(frozen=True, slots=True)
class HeadToHead:
    """The candidate and the serving version scored on the same cases: the candidate's test
    cases (its held-out ones in the worker). ``cases`` is how many."""

    candidate: Mapping[str, float]
    serving: Mapping[str, float]
    cases: int


def head_to_head(
    candidate: Any,
    serving: Any,
    cases: Sequence[EvalCase],
    batch_size: int = 1000,
    measured: Mapping[str, float] | None = None,
) -> HeadToHead | None:
    """Both models (anything :func:`evaluate` scores, each with its own ``vocabulary``) on
    ``cases`` (``measured``: the candidate's, when the loader has scored it on them already);
    None when there are none or a model cannot be scored so. The serving version misses every
    target it has no column for: new items are what a retrain is for."""
    if not cases:
        return None
    try:
        own = measured or evaluate(candidate, cases, candidate.vocabulary, batch_size=batch_size)
        old = evaluate(serving, cases, serving.vocabulary, batch_size=batch_size)
    except (AttributeError, TypeError, ValueError):
        return None
    return HeadToHead(dict(own), old, len(cases))


def _below_serving(
    own: Mapping[str, float],
    current: Mapping[str, float],
    policy: GatePolicy,
    where: str,
) -> str | None:
    for m in policy.metrics:
        if m not in current or m not in own:
            continue  # the serving version predates this metric: nothing to compare against
        floor = current[m] * (1.0 - policy.tolerance)
        if own[m] < floor:
            return (
                f"{m} {own[m]:.4g} is below the serving {current[m]:.4g}{where} beyond the "
                f"{policy.tolerance:.0%} tolerance (minimum {floor:.4g})"
            )
    return None


def quality_gate(
    candidate: Mapping[str, Any],
    serving: Mapping[str, Any] | None,
    policy: GatePolicy = GatePolicy(),
    paired: HeadToHead | None = None,
) -> str | None:
    """Why ``candidate`` (a manifest) must not replace ``serving``, or None if it may.

    ``paired``: both versions scored on the candidate's cases; then the serving version's own
    manifest is not compared (its metrics come from another window).

    >>> good = {"metrics": {"test": {"recall@20": 0.30, "mrr@20": 0.10},
    ...         "baselines": {"markov": {"recall@20": 0.20, "mrr@20": 0.08}}}}
    >>> quality_gate(good, None) is None
    True
    >>> worse = {"metrics": {"test": {"recall@20": 0.30, "mrr@20": 0.09},
    ...          "baselines": {"markov": {"recall@20": 0.20, "mrr@20": 0.08}}}}
    >>> quality_gate(worse, good)
    'mrr@20 0.09 is below the serving 0.1 beyond the 5% tolerance (minimum 0.095)'
    >>> same = HeadToHead({"recall@20": 0.3, "mrr@20": 0.09}, {"recall@20": 0.2, "mrr@20": 0.07}, 9)
    >>> quality_gate(worse, good, paired=same) is None
    True
    """
    own, baselines = manifest_metrics(candidate)
    missing = [m for m in policy.metrics if m not in own]
    if missing:
        return f"manifest has no finite test {', '.join(missing)}"
    if serving is not None:
        if paired is not None:
            where = f" on the candidate's {paired.cases} test cases"
            below = _below_serving(paired.candidate, paired.serving, policy, where)
        else:
            below = _below_serving(own, manifest_metrics(serving)[0], policy, "")
        if below is not None:
            return below
    if not baselines and policy.require_baselines:
        return "manifest records no baselines to beat"
    for name, values in sorted(baselines.items()):
        for m in policy.metrics:
            if m in values and not own[m] > values[m]:
                return f"{m} {own[m]:.4g} does not beat baseline {name} ({values[m]:.4g})"
    return None
