"""The session-model quality gate: may a candidate version replace the serving one?

One rule for the worker's model slot and for ``streamrec evaluate --system``'s replay, so the
swaps the replay reports are the ones the worker would make. The rules: docs/stream.md, "The
session-model gate".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from models.session.artifacts import manifest_metrics

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


def quality_gate(
    candidate: Mapping[str, Any],
    serving: Mapping[str, Any] | None,
    policy: GatePolicy = GatePolicy(),
) -> str | None:
    """Why ``candidate`` (a manifest) must not replace ``serving``, or None if it may.

    >>> good = {"metrics": {"test": {"recall@20": 0.30, "mrr@20": 0.10},
    ...         "baselines": {"markov": {"recall@20": 0.20, "mrr@20": 0.08}}}}
    >>> quality_gate(good, None) is None
    True
    >>> worse = {"metrics": {"test": {"recall@20": 0.30, "mrr@20": 0.09},
    ...          "baselines": {"markov": {"recall@20": 0.20, "mrr@20": 0.08}}}}
    >>> quality_gate(worse, good)
    'mrr@20 0.09 is below the serving 0.1 beyond the 5% tolerance (minimum 0.095)'
    """
    own, baselines = manifest_metrics(candidate)
    missing = [m for m in policy.metrics if m not in own]
    if missing:
        return f"manifest has no finite test {', '.join(missing)}"
    if serving is not None:
        current, _ = manifest_metrics(serving)
        for m in policy.metrics:
            if m not in current:
                continue  # the serving version predates this metric: nothing to compare against
            floor = current[m] * (1.0 - policy.tolerance)
            if own[m] < floor:
                return (
                    f"{m} {own[m]:.4g} is below the serving {current[m]:.4g} beyond the "
                    f"{policy.tolerance:.0%} tolerance (minimum {floor:.4g})"
                )
    if not baselines and policy.require_baselines:
        return "manifest records no baselines to beat"
    for name, values in sorted(baselines.items()):
        for m in policy.metrics:
            if m in values and not own[m] > values[m]:
                return f"{m} {own[m]:.4g} does not beat baseline {name} ({values[m]:.4g})"
    return None
