"""``StreamScorer.event_priors`` against the plain definition it replaces: each event's history
scanned as a list, then every event's repeat test scanned again (``teaching``)."""

from __future__ import annotations

import random

import pytest

from models.online.stream import StreamScorer
from models.online.stream.deltas import merge_history


def reference(before, events, history_len):
    running: dict[str, list[str]] = {}
    out: list[list[str]] = [[] for _ in events]
    for at in sorted(range(len(events)), key=lambda i: events[i][2]):
        user, item = events[at][0], events[at][1]
        history = running.get(user)
        if history is None:
            history = list(before.get(user, ()))
        out[at] = history
        if item in history:
            running[user] = merge_history(history, [item], history_len)
        else:
            running[user] = [*history, item][-history_len:]
    pairs = enumerate(zip(events, out, strict=True))
    taught = [at for at, (event, prior) in pairs if event[1] not in prior]
    return out, taught


@pytest.mark.parametrize("seed", range(40))
def test_event_priors_equal_the_list_scans(seed: int) -> None:
    rng = random.Random(seed)
    cap = rng.choice([1, 2, 3, 5, 8])
    items = [f"i{k}" for k in range(rng.choice([3, 6, 12]))]
    users = [f"u{k}" for k in range(3)]
    before = {}
    for user in users[:2]:
        history = rng.sample(items, min(len(items), rng.randint(0, cap + 2)))  # may pass the cap
        if rng.random() < 0.2 and history:
            history.append(history[0])  # a history that is not distinct: scanned, not a set
        before[user] = history
    events = [
        (rng.choice(users), rng.choice(items), rng.randint(0, 6), 0)
        for _ in range(rng.randint(0, 25))
    ]
    assert StreamScorer.event_priors(before, events, cap) == reference(before, events, cap)
