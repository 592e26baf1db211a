"""Every reason the stream model gives either names an item of the user's own history, which
readers can title (``models.online.stream.reasons``), or names none (the trending fallback):
the reason templates of ``scoring`` and the parser stay one vocabulary."""

from __future__ import annotations

from collections import Counter

from models.datasets import SyntheticConfig, generate_synthetic
from models.online.stream import TRENDING_REASON, StreamModel
from models.online.stream.reasons import AFTER, NEXT_AFTER, SIMILAR_TO, reason_source, titled


def test_every_reason_names_a_history_item_or_none():
    events = generate_synthetic(SyntheticConfig(seed=3).resized(4000)).events
    model = StreamModel(partitions=1, min_trained=200)
    for event in events:
        model.learn_one(event)
    kinds: Counter[str] = Counter()
    for user, history in list(model.histories.items())[:300]:
        for rec in model.recommend(user, k=10):
            source = reason_source(rec.reason)
            if source is None:
                assert rec.reason == TRENDING_REASON, rec.reason
                kinds["trending"] += 1
                continue
            assert source in history, (user, rec.reason)
            kinds[rec.reason.split(source)[0]] += 1
            assert titled(rec.reason, {source: "T"}) == rec.reason.replace(source, "T")
    # the stream exercises every template, so a renamed one cannot slip past this test; the
    # synthetic stream's clicks, carts and purchases give their own verbs
    verbs = {"because you clicked ", "because you added ", "because you bought "}
    assert {SIMILAR_TO, NEXT_AFTER, AFTER} | verbs <= set(kinds), kinds
