"""Exponential time decay, in the *forward* form that lets decayed sums live in plain counters.

A weight ``w`` observed at time ``t`` is worth ``w * 2 ** (-(now - t) / half_life)`` at ``now``.
Rather than decaying every stored counter as time passes, forward decay stores
``w * 2 ** ((t - epoch) / half_life)`` once and divides by ``2 ** ((now - epoch) / half_life)``
when reading. Orders never change with ``now``, so a Redis sorted set incremented with forward
weights ranks items by decayed popularity without any rewriting. The stored numbers grow by 2x
per half-life; ``epoch`` is moved forward (a *rescale*) before they would lose float precision.
"""

from __future__ import annotations

#: Rescale when stored forward weights exceed 2**RESCALE_EXPONENT (float64 keeps ~2**52 exact).
RESCALE_EXPONENT = 40.0


def decay_factor(age_ms: float, half_life_s: float) -> float:
    """Multiplier of a weight that is ``age_ms`` old.

    >>> decay_factor(3_600_000, 3600.0), decay_factor(0, 10.0)
    (0.5, 1.0)
    """
    return 2.0 ** (-max(age_ms, 0.0) / (half_life_s * 1000.0))


def forward_weight(
    weight: float, timestamp_ms: float, epoch_ms: float, half_life_s: float
) -> float:
    """The value to add to a forward-decayed counter for ``weight`` seen at ``timestamp_ms``.

    >>> forward_weight(1.0, 7_200_000, 0, 3600.0)
    4.0
    """
    return weight * 2.0 ** ((timestamp_ms - epoch_ms) / (half_life_s * 1000.0))


def forward_to_decayed(stored: float, now_ms: float, epoch_ms: float, half_life_s: float) -> float:
    """Read a forward-decayed counter as its decayed value at ``now_ms``.

    >>> forward_to_decayed(4.0, 7_200_000, 0, 3600.0)
    1.0
    """
    return stored * 2.0 ** (-(now_ms - epoch_ms) / (half_life_s * 1000.0))


def needs_rescale(timestamp_ms: float, epoch_ms: float, half_life_s: float) -> bool:
    """True when forward weights at ``timestamp_ms`` would be too large to stay precise."""
    return (timestamp_ms - epoch_ms) / (half_life_s * 1000.0) > RESCALE_EXPONENT


def rescale_factor(old_epoch_ms: float, new_epoch_ms: float, half_life_s: float) -> float:
    """Multiply every stored forward weight by this when moving the epoch forward."""
    return 2.0 ** (-(new_epoch_ms - old_epoch_ms) / (half_life_s * 1000.0))


def advance_epoch(
    epoch_ms: float | None, timestamp_ms: float, half_life_s: float
) -> tuple[float, float | None]:
    """``(epoch, rescale factor or None)`` for counters that are about to take an observation.

    The first observation sets the epoch; one that would push forward weights past float
    precision moves it there, and every stored forward weight must be multiplied by the factor.

    >>> advance_epoch(None, 5_000, 60.0)
    (5000.0, None)
    >>> advance_epoch(0.0, 3_600_000, 3600.0)
    (0.0, None)
    >>> advance_epoch(0.0, 3_600_000 * 41, 3600.0) == (147_600_000.0, 2.0**-41)
    True
    """
    if epoch_ms is None:
        return float(timestamp_ms), None
    if needs_rescale(timestamp_ms, epoch_ms, half_life_s):
        return float(timestamp_ms), rescale_factor(epoch_ms, timestamp_ms, half_life_s)
    return epoch_ms, None
