"""The session model's share of a list: the one blend step the worker and the replay run.

The worker's batch (``OnlineScorer``) and ``streamrec evaluate --system`` (``SystemModel``) both
call :func:`blend_sessions`, so the blend a replay measures is the blend users get.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from models.online.stream.scoring import Recommendation, blend_session

#: Places of a list the session model gets by default (``STREAMREC_SESSION_SLOTS``): 1, not 5.
#: ``streamrec evaluate --system`` measured five of ten places costing HitRate@10 on MovieLens
#: (-5.4%) and its positive-only stream (-5.7%) and MRR@10 on the e-commerce log (-7.6%) against
#: the online model alone; one place stays within 1% of it on all three (README, "System replay").
SESSION_SLOTS = 1


class ServingSessionModel(Protocol):
    """What the blend needs of a session model: the serving verb (``SessionModel``'s)."""

    def recommend(
        self,
        prefixes: Sequence[Sequence[str]],
        k: int,
        exclude: Sequence[Iterable[str]] | None = None,
    ) -> list[list[tuple[str, float]]]: ...


def blend_sessions(
    model: ServingSessionModel,
    histories: Sequence[Sequence[str]],
    unseen: Sequence[Sequence[str]],
    ranked: Sequence[Sequence[Recommendation]],
    n: int,
    session_len: int = 10,
    slots: int = SESSION_SLOTS,
) -> list[list[Recommendation]]:
    """Each row's CF list ``ranked[r]`` with up to ``slots`` of the session model's items
    interleaved (:func:`blend_session`); the prefix is the history's last ``session_len``
    items, and no item of ``unseen[r]`` (her history and exclusions) comes back. One batched
    call of the model; ``slots`` 0 leaves the lists as they are.

    >>> class Fixed:
    ...     def recommend(self, prefixes, k, exclude=None):
    ...         return [[("s", 1.0), ("a", 0.5)][:k] for _ in prefixes]
    >>> cf = [[Recommendation("x", 2.0, "because you viewed a")]]
    >>> [r.item_id for r in blend_sessions(Fixed(), [["a"]], [["a"]], cf, 3)[0]]
    ['x', 's']
    """
    if slots <= 0 or not histories:
        return [list(row) for row in ranked]
    prefixes = [list(history[-session_len:]) for history in histories]
    session = model.recommend(prefixes, slots, exclude=[list(u) for u in unseen])
    return [
        blend_session(row, items, skip, n, slots)
        for row, items, skip in zip(ranked, session, unseen, strict=True)
    ]
