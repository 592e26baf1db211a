"""Negative feedback: the contract's ``dislike`` and ``skip`` and the rating threshold, the
stream model that never recommends a turned-down item back and learns nothing from it, and the
prequential protocol that never makes a negative event a trial."""

from __future__ import annotations

import random

import numpy as np
import pytest

from models.datasets import SyntheticConfig, generate_synthetic
from models.evaluation.prequential import prequential
from models.events import (
    EVENT_TYPES,
    NEGATIVE_EVENT_TYPES,
    Feedback,
    Interaction,
    InvalidEvent,
    event_weight,
    validate_event,
)
from models.online.baselines import PopularityBaseline
from models.online.stream import StreamModel

T0 = 1_700_000_000_000


def _event(kind: str, value: float | None = None) -> dict:
    out = {"user_id": "u", "item_id": "i", "event_type": kind, "timestamp": T0}
    return out if value is None else {**out, "value": value}


# ------------------------------------------------------------------------------ the contract


@pytest.mark.parametrize("kind", ["dislike", "skip"])
def test_dislike_and_skip_are_event_types_without_a_value(kind: str) -> None:
    assert kind in EVENT_TYPES and kind in NEGATIVE_EVENT_TYPES
    assert validate_event(_event(kind)).event_type == kind
    assert validate_event(_event(kind, 1.0)).value == 1.0  # a value is carried, not needed
    with pytest.raises(InvalidEvent, match="is not one of view, click, add_to_cart, purchase"):
        validate_event(_event("thumbs_down"))


def test_negatives_are_the_two_types_and_ratings_strictly_below_the_threshold() -> None:
    off, at_3 = Feedback(), Feedback(negative_rating_below=3.0)
    for kind in ("dislike", "skip"):
        assert off.is_negative(validate_event(_event(kind)))
    for kind in ("view", "click", "add_to_cart", "purchase"):
        assert not at_3.is_negative(validate_event(_event(kind)))
    ratings = {v: validate_event(_event("rating", v)) for v in (1.0, 2.9, 3.0, 5.0)}
    assert [off.is_negative(e) for e in ratings.values()] == [False] * 4
    assert [at_3.is_negative(e) for e in ratings.values()] == [True, True, False, False]


def test_weights_are_today_s_by_default_and_configurable() -> None:
    events = {k: validate_event(_event(k)) for k in ("view", "click", "add_to_cart", "purchase")}
    assert [event_weight(e) for e in events.values()] == [1.0, 2.0, 3.0, 5.0]
    assert event_weight(validate_event(_event("rating", 4.0))) == 4.0  # 4/5 of a purchase
    rules = Feedback(weights=(("view", 0.5), ("purchase", 8.0), ("rating", 10.0)))
    assert rules.weight(events["view"]) == 0.5 and rules.weight(events["purchase"]) == 8.0
    assert rules.weight(events["click"]) == 2.0  # not named: the default
    assert rules.weight(validate_event(_event("rating", 4.0))) == 8.0
    assert rules.weight(validate_event(_event("dislike"))) == 0.0


# ------------------------------------------------------------------------- the stream model


def _stream(n_events: int = 1_500) -> list[Interaction]:
    return generate_synthetic(
        SyntheticConfig(n_users=30, n_items=50, n_clusters=4, n_events=n_events, seed=3)
    ).events


def test_a_disliked_item_never_comes_back() -> None:
    model = StreamModel(partitions=2, min_trained=100)
    stream = _stream()
    for event in stream[:1_000]:
        model.learn_one(event)
    user = stream[999].user_id
    top = model.rank(user, 10)
    assert top, "the user must have recommendations to turn down"
    turned_down = top[:2]
    t = stream[999].timestamp_ms
    model.learn_one(Interaction(user, turned_down[0], "dislike", t))
    model.learn_one(Interaction(user, turned_down[1], "skip", t))
    assert not set(model.rank(user, 50)) & set(turned_down)
    assert model.excluded[user] == turned_down
    for event in stream[1_000:]:  # later events, her own and others', bring neither back
        model.learn_one(event)
        assert not set(model.rank(user, 50)) & set(turned_down)
    assert not set(model.rank(user, 1_000)) & set(turned_down)  # nor does the trending fill


def test_a_rating_below_the_threshold_excludes_its_item_like_a_dislike() -> None:
    stream = _stream(800)
    low = StreamModel(partitions=1, feedback=Feedback(negative_rating_below=3.0))
    plain = StreamModel(partitions=1)
    for event in stream:
        low.learn_one(event)
        plain.learn_one(event)
    user, t = stream[-1].user_id, stream[-1].timestamp_ms
    item = low.rank(user, 1)[0]
    for model in (low, plain):
        model.learn_one(Interaction(user, item, "rating", t, 2.0))
    assert item not in low.rank(user, 50) and low.excluded == {user: [item]}
    assert item in plain.histories[user] and not plain.excluded  # no threshold: a positive


def _state(model: StreamModel) -> dict:
    rankers = {
        p: (r.n_updates, r.n_pairs, r.n_events, r.weights().tolist())
        for p, r in model.scorer.rankers.items()
    }
    trending = model.popularity.top(1_000, model._now_ms)
    return {
        "rows": model.rows,
        "norms": model.norms,
        "neighbors": model.neighbors,
        "successors": model.successors,
        "histories": model.histories,
        "trending": trending,
        "rankers": rankers,
    }


def test_negative_events_teach_nothing() -> None:
    """The same stream with and without negative events (dislikes, skips and low ratings of
    items the users also act on, before and after): the pair and transition rows, the
    published lists, the histories, popularity and the rankers are the same."""
    stream = _stream()
    rng = random.Random(11)
    items = sorted({e.item_id for e in stream})
    mixed: list[Interaction] = []
    for event in stream:
        mixed.append(event)
        if rng.random() < 0.3:
            kind = rng.choice(["dislike", "skip", "rating"])
            value = rng.choice([1.0, 2.0]) if kind == "rating" else None
            mixed.append(
                Interaction(event.user_id, rng.choice(items), kind, event.timestamp_ms, value)
            )
    rules = Feedback(negative_rating_below=3.0)
    plain, fed = (
        StreamModel(partitions=2, min_trained=50),
        StreamModel(partitions=2, min_trained=50, feedback=rules),
    )
    for event in stream:
        plain.learn_one(event)
    for event in mixed:
        fed.learn_one(event)
    assert len(mixed) - len(stream) > 300 and sum(map(len, fed.excluded.values())) > 200
    ours, theirs = _state(fed), _state(plain)
    assert ours["rankers"] == theirs["rankers"] and theirs["rankers"][0][0] > 50
    for key in ("rows", "norms", "neighbors", "successors", "histories", "trending"):
        assert ours[key] == theirs[key], key
    np.testing.assert_array_equal(
        fed.scorer.rankers[1].weights(), plain.scorer.rankers[1].weights()
    )


# ---------------------------------------------------------------------- the prequential loop


def test_a_negative_event_is_no_trial_and_reaches_only_the_models_that_read_feedback() -> None:
    events = [
        Interaction("a", "x", "view", T0),
        Interaction("b", "x", "view", T0 + 1),
        Interaction("c", "y", "dislike", T0 + 2),
        Interaction("c", "z", "rating", T0 + 3, 1.0),
        Interaction("c", "y", "view", T0 + 4),  # an item she turned down: no trial either
        Interaction("c", "x", "view", T0 + 5),
    ]
    pop, stream = PopularityBaseline(), StreamModel(partitions=1)
    rules = Feedback(negative_rating_below=3.0)
    stream.feedback = rules
    out = prequential(events, {"pop": pop, "streamrec": stream}, warmup=0.0, feedback=rules)
    protocol = out["protocol"]
    assert protocol["negative_events_not_scored"] == 2
    assert protocol["scored_events"] == 3 and protocol["repeats_not_scored"] == 1
    assert pop.counts.sum() == 4  # the baseline never learned a negative event as a positive
    assert stream.excluded == {"c": ["y", "z"]}
    default = prequential(events, {"pop": PopularityBaseline()}, warmup=0.0)["protocol"]
    assert default["negative_events_not_scored"] == 1  # without a threshold a rating is positive
