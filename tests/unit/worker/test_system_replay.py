"""The system replay scores as the worker does: the same stream state and session model give
the same lists through ``SystemModel.rank`` as through the worker's ``OnlineScorer``; the
periodic trainer swaps through the worker's gate; a view ranks only what its system ranked."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest

from models.datasets.synthetic import SyntheticConfig, generate_synthetic
from models.online.stream import StreamModel
from models.online.system import SessionTrainer, SystemModel
from stream_app.cache import MemoryCache
from stream_app.worker.online_scorer import OnlineScorer


class PlantedSession:
    """A session model that answers every prefix with the same items (a fake with the real
    ``recommend`` signature), so the blend is visible in every list."""

    version = "planted"

    def __init__(self, items: Sequence[str]) -> None:
        self.items = list(items)

    def recommend(
        self,
        prefixes: Sequence[Sequence[str]],
        k: int,
        exclude: Sequence[Iterable[str]] | None = None,
    ) -> list[list[tuple[str, float]]]:
        out = []
        for row, prefix in enumerate(prefixes):
            skip = set(exclude[row]) if exclude is not None else set()
            kept = [i for i in self.items if i not in skip] if prefix else []
            out.append([(item, 1.0 / (1 + n)) for n, item in enumerate(kept[:k])])
        return out


class Slot:
    def __init__(self, model: PlantedSession) -> None:
        self.model, self.version = model, model.version

    def current(self) -> PlantedSession:
        return self.model


def _learned(n_events: int = 3000) -> tuple[StreamModel, list]:
    data = generate_synthetic(
        SyntheticConfig(n_users=60, n_items=120, n_clusters=6, n_events=n_events, seed=4)
    )
    stream = StreamModel(partitions=2, min_trained=50)
    for event in data.events:
        stream.learn_one(event)
    return stream, data.events


@pytest.mark.parametrize("slots", [1, 3, 5])
def test_replay_lists_equal_the_worker_scoring_path(slots: int) -> None:
    stream, events = _learned()
    session = PlantedSession([f"i{n}" for n in range(0, 120, 7)])
    trainer = SessionTrainer(every_ms=10**15, window_ms=10**15, model=session)
    system = SystemModel(stream, trainer, slots=(0, slots), primary=slots)
    cache = MemoryCache()
    cache.publish_neighbors(stream.neighbors, stream.norms, stream.successors)
    worker = OnlineScorer(
        cache, Slot(session), partitions=2, model=stream.scorer, session_slots=slots
    )
    now = events[-1].timestamp_ms
    users = sorted({e.user_id for e in events})[:25]
    trending = stream.popularity.top(stream.trending_depth, now)
    served = worker.recommend_batch({u: stream.histories[u] for u in users}, trending, n=10)
    blended = 0
    for user in users:
        ours = system.rank(user, 10, now)
        assert ours == [r.item_id for r in served[user]], user
        blended += any(r.reason == "based on your current session" for r in served[user])
    assert blended > 0  # the session model had a share in the lists compared


def test_the_trainer_swaps_through_the_gate_and_keeps_a_better_serving_model() -> None:
    data = generate_synthetic(
        SyntheticConfig(n_users=80, n_items=150, n_clusters=6, n_events=8000, seed=2)
    )
    trainer = SessionTrainer(
        every_ms=2 * 86_400_000, window_ms=20 * 86_400_000, min_events=1500, config=None
    )
    for event in data.events:
        trainer.observe(event)
    assert trainer.swaps and trainer.swaps[0].accepted
    assert trainer.swaps[0].reason == "swapped in, replacing none"
    assert trainer.model is not None and trainer.manifest is not None
    assert trainer.manifest["version"] == [s.version for s in trainer.swaps if s.accepted][-1]
    for swap in trainer.swaps:
        assert swap.window_events >= 1500
        assert swap.accepted == swap.reason.startswith("swapped in")
    # a candidate far below the serving one is refused and the serving model stays
    serving = trainer.model
    trainer.manifest = {
        "version": "better",
        "metrics": {"test": {"recall@20": 1.0, "mrr@20": 1.0}},
    }
    refused = trainer.retrain(data.events[-1].timestamp_ms, 0)
    assert refused is not None and not refused.accepted and "below the serving" in refused.reason
    assert trainer.model is serving


def test_a_view_ranks_only_the_trial_its_system_ranked() -> None:
    stream, events = _learned(500)
    system = SystemModel(stream, SessionTrainer(every_ms=1, window_ms=1), slots=(0, 2))
    online = system.view(0)
    with pytest.raises(RuntimeError):
        online.rank("u1", 10, 5)
    now = events[-1].timestamp_ms
    assert online.rank if system.rank("u1", 10, now) is not None else None
    assert online.rank("u1", 10, now) == [r.item_id for r in stream.recommend("u1", 10, now)]
    with pytest.raises(ValueError):
        system.view(4)
