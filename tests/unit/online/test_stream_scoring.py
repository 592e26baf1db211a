"""The stream model's scoring: candidates and features, top-N and reasons, the training pairs,
the partitions' rankers, the worker's ``OnlineScorer``, and the one code path they share with
the in-process ``StreamModel``."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import orjson
import pytest

from models.catalog import ItemRecord
from models.datasets import SyntheticConfig, generate_synthetic, synthetic_catalog
from models.events import Feedback, Interaction
from models.online.stream import (
    FEATURES,
    FIXED_BLEND,
    RANKER_NAME,
    SESSION_REASON,
    TRENDING_REASON,
    ScoringParams,
    StreamModel,
    StreamRanker,
    StreamScorer,
    arrays,
)
from models.online.stream.arrays import ListIndex
from models.online.stream.content import ItemContent
from models.online.stream.deltas import merge_history
from models.online.stream.partitions import key_partition
from models.online.stream.reasons import act_of, merge_acts
from models.online.stream.scoring import (
    Candidates,
    candidates,
    popularity_values,
    recommendations,
    training_pairs,
)
from stream_app.cache import CacheKeys, MemoryCache
from stream_app.worker.item_side import _folded, _publish_neighbors
from stream_app.worker.live_path import LivePath
from stream_app.worker.online_scorer import CF_VERSION, OnlineScorer
from stream_app.worker.user_side import SortedBatch, batch_deltas

T0 = 1_700_000_000_000
Lists = dict[str, list[tuple[str, float]]]


# ----------------------------------------------------------------------------- candidates()


def _path_position(
    items: Sequence[str], successors: Mapping[str, Sequence[tuple[str, float]]]
) -> str:
    """The path position as FEATURES describes it: start at the first item, follow an item only
    when it is the position's top successor (anything else is a detour)."""
    position = items[0]
    for item in items[1:]:
        nexts = successors.get(position) or []
        if nexts and nexts[0][0] == item:
            position = item
    return position


def _oracle_features(
    history: Sequence[str],
    neighbors: Mapping[str, Sequence[tuple[str, float]]],
    successors: Mapping[str, Sequence[tuple[str, float]]],
    trending: Sequence[tuple[str, float]],
    params: ScoringParams,
) -> dict[str, tuple[float, ...]]:
    """One user's candidates and FEATURES spelled out with dicts (sums in list order)."""
    knn: dict[str, float] = {}
    markov: dict[str, float] = {}
    skip: dict[str, float] = {}
    if history:
        for age, source in enumerate(reversed(history[-params.recent :])):
            for other, sim in neighbors.get(source) or ():
                knn[other] = knn.get(other, 0.0) + sim * params.recency_decay**age
        last = history[-1]
        for other, p in successors.get(last) or ():
            markov[other] = markov.get(other, 0.0) + p
        earlier = list(reversed(history[-1 - params.skip_steps : -1]))
        sources = [(item, params.skip_decay**age) for age, item in enumerate(earlier)]
        position = _path_position(history[-params.resume_window :], successors)
        if position != last:
            sources.append((position, 1.0))
        for item, scale in sources:
            for other, p in successors.get(item) or ():
                skip[other] = skip.get(other, 0.0) + p * scale
    shown = [item for item, _ in trending[: params.trending_candidates]]
    chosen = (set(knn) | set(markov) | set(skip) | set(shown)) - set(history)
    popularity = dict(
        zip([i for i, _ in trending], popularity_values(trending).tolist(), strict=True)
    )

    def scaled(values: dict[str, float]) -> dict[str, float]:
        # each user's values over her candidates, divided by their max (as is if not positive)
        top = max((values[item] for item in chosen if item in values), default=0.0)
        scale = 1.0 / top if top > 0 else 1.0
        return {item: values[item] * scale + 0.0 for item in chosen if item in values}

    knn_scaled, markov_scaled = scaled(knn), scaled(markov)
    return {
        item: (
            knn_scaled.get(item, 0.0),
            markov_scaled.get(item, 0.0),
            markov.get(item, 0.0),
            skip.get(item, 0.0),
            popularity.get(item, 0.0),
            0.0,  # content: no catalog here (test_stream_content.py has its own oracle)
        )
        for item in chosen
    }


def _features_by_row(cands: Candidates, index: ListIndex) -> list[dict[str, tuple[float, ...]]]:
    out: list[dict[str, tuple[float, ...]]] = [{} for _ in range(cands.users)]
    for j in range(cands.size):
        item = index.items[int(cands.ids[j])]
        out[int(cands.rows[j])][item] = tuple(cands.features[:, j].tolist())
    return out


def _random_lists(rng: random.Random, items: list[str]) -> tuple[Lists, Lists]:
    """Neighbour and successor lists with duplicates within and across lists, tied weights half
    the time, some items without a list and some with an empty one."""
    weight = (lambda: rng.choice([0.25, 0.5, 1.0])) if rng.random() < 0.5 else rng.random
    neighbors = {
        a: [(rng.choice(items), weight()) for _ in range(rng.randint(0, 12))]
        for a in rng.sample(items, 30)
    }
    successors = {
        a: sorted(
            [(rng.choice(items), weight()) for _ in range(rng.randint(0, 5))],
            key=lambda pair: -pair[1],  # published best first: the path position reads [0]
        )
        for a in rng.sample(items, 25)
    }
    return neighbors, successors


#: ListIndex set-ups: a new one per batch; one for all batches whose pool starts tiny and is
#: packed whenever a list was replaced (every batch has new list objects); one that forgets
#: all its lists every few batches
_INDEXES = {
    "fresh-index": None,
    "packed-pool": lambda: ListIndex(capacity=8, slack=0),
    "cleared-lists": lambda: ListIndex(max_lists=40),
}


@pytest.mark.parametrize("pool", list(_INDEXES))
@pytest.mark.parametrize("dense", [True, False], ids=["flag-per-key", "sorted-keys"])
def test_candidates_equal_a_dict_oracle_for_a_batch_of_users(
    monkeypatch: pytest.MonkeyPatch, dense: bool, pool: str
) -> None:
    # both ways ``groups`` finds the batch's (user, item) keys: a flag per key, or one sort
    monkeypatch.setattr(arrays, "DENSE_KEYS_PER_ENTRY", 10**9 if dense else 0)
    make = _INDEXES[pool]
    shared = make() if make is not None else None
    rng = random.Random(11)
    items = [f"{rng.choice('abc')}{k}" for k in range(40)]  # string order != id order
    checked = 0
    for _ in range(25):
        neighbors, successors = _random_lists(rng, items)
        histories = [
            [rng.choice(items) for _ in range(rng.choice([1, 2, 5, 30]))] for _ in range(10)
        ]
        histories += [[], ["zz-no-list"], list(dict.fromkeys(rng.sample(items, 12)))]
        ranked_items = rng.sample([*items, "zz-no-list"], 8)
        trending = [(item, float(k)) for k, item in zip(range(8, 0, -1), ranked_items, strict=True)]
        params = ScoringParams(
            recent=rng.choice([3, 20]),
            recency_decay=rng.choice([0.5, 0.9]),
            skip_steps=rng.choice([1, 3]),
            resume_window=rng.choice([4, 10]),
            trending_candidates=rng.choice([0, 3, 50]),
        )
        index = shared or ListIndex()
        cands = candidates(histories, neighbors, successors, trending, index, params)
        got = _features_by_row(cands, index)
        for row, history in enumerate(histories):
            expected = _oracle_features(history, neighbors, successors, trending, params)
            assert got[row] == expected  # exact: the same float operations in the same order
            ids = cands.ids[cands.bounds[row] : cands.bounds[row + 1]]
            assert (np.diff(ids) > 0).all()  # a row's entries by item id, each once
            checked += len(expected)
    assert checked > 1_000


# -------------------------------------------------------------------------- recommendations()


def _recommend(
    histories: list[list[str]],
    neighbors: Mapping[str, Sequence[tuple[str, float]]],
    successors: Mapping[str, Sequence[tuple[str, float]]],
    trending: list[tuple[str, float]],
    n: int,
    weights: Sequence[float] = FIXED_BLEND,
    params: ScoringParams | None = None,
) -> list[list[tuple[str, str]]]:
    index = ListIndex()
    cands = candidates(histories, neighbors, successors, trending, index, params or ScoringParams())
    matrix = np.array([weights] * len(histories))
    recs = recommendations(cands, histories, matrix, trending, n, index)
    return [[(r.item_id, r.reason) for r in row] for row in recs]


def test_recommendations_exclude_seen_items_break_ties_by_item_id_and_fill_from_trending() -> None:
    neighbors = {"a": [("y", 0.5), ("x", 0.5), ("b", 0.9)]}
    trending = [("a", 9.0), ("t2", 3.0), ("t1", 2.0)]
    # one trending candidate ("a", seen): the rest of the list comes from the fill
    got = _recommend(
        [["b", "a"]], neighbors, {}, trending, 5, params=ScoringParams(trending_candidates=1)
    )
    assert got == [
        [
            ("x", "because you viewed a"),  # x and y tie; x is the smaller id
            ("y", "because you viewed a"),
            ("t2", TRENDING_REASON),
            ("t1", TRENDING_REASON),
        ]
    ]


def test_reasons_name_the_strongest_recent_item_the_last_one_or_trending() -> None:
    params = ScoringParams(recency_decay=0.5)
    # x: a (older) 0.5 * 0.5 ties b (newest) 0.25: the newer one is named; y: a is stronger
    neighbors = {"a": [("x", 0.5), ("y", 0.8)], "b": [("x", 0.25), ("y", 0.1)]}
    successors = {"b": [("z", 0.9)]}
    got = _recommend([["a", "b"]], neighbors, successors, [("t", 1.0)], 5, params=params)
    assert dict(got[0]) == {
        "x": "because you viewed b",
        "y": "because you viewed a",
        "z": "often next after b",
        "t": TRENDING_REASON,
    }
    # the skipped item's transitions, when the weights trust them most
    skip_only = (0.0, 0.0, 0.0, 1.0, 0.0, 0.0)
    got = _recommend([["a", "b"]], {}, {"a": [("w", 0.5)]}, [], 2, skip_only)
    assert got == [[("w", "often after a")]]
    assert _recommend([[]], neighbors, successors, [("t", 1.0)], 3) == [[("t", TRENDING_REASON)]]


def test_a_user_scored_alone_gets_what_she_gets_in_a_batch() -> None:
    rng = random.Random(5)
    items = [f"{rng.choice('xyz')}{k}" for k in range(50)]
    for _ in range(10):
        neighbors, successors = _random_lists(rng, items)
        histories = [
            list(dict.fromkeys(rng.choice(items) for _ in range(rng.randint(0, 25))))
            for _ in range(12)
        ]
        trending = [(item, float(k)) for k, item in enumerate(rng.sample(items, 10), 1)][::-1]
        weights = np.array([[rng.uniform(-0.5, 1.5) for _ in FEATURES] for _ in histories])
        index = ListIndex()
        cands = candidates(histories, neighbors, successors, trending, index)
        batch = recommendations(cands, histories, weights, trending, 10, index)
        for row, history in enumerate(histories):
            alone_index = ListIndex()  # other integer ids: the result must not depend on them
            alone_cands = candidates([history], neighbors, successors, trending, alone_index)
            alone = recommendations(
                alone_cands, [history], weights[row : row + 1], trending, 10, alone_index
            )
            assert alone == [batch[row]]
            assert not {r.item_id for r in batch[row]} & set(history)


# --------------------------------------------------------------------------- training_pairs()


def _pairs(
    cands: Candidates, index: ListIndex, events: list[tuple[int, str, int]], **kw: Any
) -> list[tuple[int, list[list[float]]]]:
    weights = np.array([FIXED_BLEND] * cands.users)
    return [(at, diff.tolist()) for at, diff in training_pairs(cands, weights, events, index, **kw)]


def test_training_pairs_are_a_function_of_the_seed() -> None:
    rng = random.Random(2)
    items = [f"i{k}" for k in range(40)]
    neighbors, successors = _random_lists(rng, items)
    histories = [rng.sample(items, 6) for _ in range(8)]
    index = ListIndex()
    cands = candidates(histories, neighbors, successors, [("i1", 2.0), ("i2", 1.0)], index)
    events = [(row, rng.choice(items), rng.getrandbits(32)) for row in range(8)]
    first = _pairs(cands, index, events)
    assert first and _pairs(cands, index, events) == first
    reseeded = [(row, item, seed + 1) for row, item, seed in events]
    assert _pairs(cands, index, reseeded) != first


def test_a_negative_is_never_the_positive() -> None:
    neighbors = {"a": [("x", 0.9), ("y", 0.3), ("w", 0.6)]}
    index = ListIndex()
    cands = candidates([["a"]], neighbors, {}, [], index)
    feats = dict(zip((index.items[i] for i in cands.ids), cands.features.T.tolist(), strict=True))

    def diff(positive: str, negative: str) -> list[float]:
        return (np.array(feats[positive]) - np.array(feats[negative])).tolist()

    for seed in range(40):
        ((_, rows),) = _pairs(cands, index, [(0, "y", seed)], n_negatives=4)
        assert len(rows) == 4
        assert all(row in (diff("y", "x"), diff("y", "w")) for row in rows)
        # hard_pool=1: the hard half is the top candidate (x), the rest uniform
        ((_, rows),) = _pairs(cands, index, [(0, "y", seed)], hard_pool=1, n_negatives=4)
        assert rows[:2] == [diff("y", "x")] * 2
        assert rows[2] in (diff("y", "x"), diff("y", "w"))


def test_a_positive_that_is_no_candidate_is_its_popularity_alone() -> None:
    trending = [("z", 3.0), ("v", 1.0)]
    index = ListIndex()
    # no trending candidates: z is popular but no candidate; x is the only candidate
    cands = candidates(
        [["a"]], {"a": [("x", 0.9)]}, {}, trending, index, ScoringParams(trending_candidates=0)
    )
    assert [index.items[i] for i in cands.ids] == ["x"]
    events = [(0, "z", 7), (0, "x", 8), (0, "never-seen", 9)]
    got = _pairs(cands, index, events, outside_positives=True, n_negatives=4)
    x = cands.features[:, 0]
    z_only = np.zeros(len(FEATURES))
    z_only[FEATURES.index("popularity")] = popularity_values(trending)[0]
    assert [at for at, _ in got] == [0, 2]  # x alone teaches nothing: no other candidate
    assert got[0][1] == [(z_only - x).tolist()] * 4
    assert got[1][1] == [(-x).tolist()] * 4
    # without outside positives (the served model), neither teaches
    assert _pairs(cands, index, events) == []


# ------------------------------------------------------------------------------ StreamRanker


def _planted_event(rng: np.random.Generator, truth: np.ndarray) -> tuple[np.ndarray, int]:
    """Five random candidates; the one ``truth`` scores highest is chosen."""
    x = rng.random((5, len(FEATURES)))
    return x, int(np.argmax(x @ truth))


def test_the_ranker_learns_a_planted_preference_and_waits_for_min_trained() -> None:
    rng = np.random.default_rng(0)
    truth = np.array([0.2, 1.5, 0.0, 0.0, -1.0, 0.0])  # transitions matter, popularity repels
    ranker = StreamRanker(min_trained=100)
    for n in range(400):
        x, chosen = _planted_event(rng, truth)
        if n < 100:
            assert ranker.weights().tolist() == list(FIXED_BLEND)
        ranker.learn((x[chosen] - np.delete(x, chosen, axis=0)).tolist())
    weights = ranker.weights()
    assert ranker.n_updates == 400 and ranker.n_pairs == 1_600
    assert weights[1] > weights[0] > 0 > weights[4]
    hits = sum(
        int(np.argmax(x @ weights)) == c
        for x, c in (_planted_event(rng, truth) for _ in range(500))
    )
    fixed = sum(
        int(np.argmax(x @ np.array(FIXED_BLEND))) == c
        for x, c in (_planted_event(rng, truth) for _ in range(500))
    )
    assert hits > 450 and fixed < 250  # the learned order, not the fixed blend's
    assert ranker.pairs_correct / ranker.n_pairs > 0.9


def test_a_ranker_state_round_trips_and_learns_on_the_same() -> None:
    rng = np.random.default_rng(1)
    truth = np.array([1.0, 0.5, 0.2, 0.1, -0.5, 0.3])
    ranker = StreamRanker(min_trained=10)
    for _ in range(50):
        x, chosen = _planted_event(rng, truth)
        ranker.learn((x[chosen] - np.delete(x, chosen, axis=0)).tolist())
    copy = StreamRanker.from_json(ranker.to_json(), min_trained=10)
    assert copy.weights().tolist() == ranker.weights().tolist()
    for name in ("n_updates", "n_pairs", "pairs_correct", "loss_sum", "learn_s", "version"):
        assert getattr(copy, name) == getattr(ranker, name), name
    x, chosen = _planted_event(rng, truth)
    for learner in (ranker, copy):
        learner.learn((x[chosen] - np.delete(x, chosen, axis=0)).tolist())
    assert copy.weights().tolist() == ranker.weights().tolist()
    # min_trained is the reader's setting, not the state's
    assert StreamRanker.from_json(ranker.to_json()).weights().tolist() == list(FIXED_BLEND)


def test_a_state_of_an_earlier_release_loads_with_the_new_features_at_zero() -> None:
    """Upgrading keeps the learning: a state over a head of FEATURES (the five features
    before ``content``) loads, its weights unchanged, the added feature at weight 0."""
    ranker = StreamRanker(min_trained=1)
    for _ in range(30):
        ranker.learn([[1.0, 0.5, 0.0, 0.0, -1.0, 0.0]])
    data = orjson.loads(ranker.to_json())
    old = {
        **data,
        "features": list(FEATURES[:5]),
        "weights": {k: v for k, v in data["weights"].items() if k != "content"},
    }
    loaded = StreamRanker.from_json(orjson.dumps(old), min_trained=1)
    assert loaded.n_updates == 30
    assert loaded.weights()[:5].tolist() == ranker.weights()[:5].tolist()
    assert loaded.weights()[5] == 0.0 and ranker.weights()[0] > 0


def _state(**changes: object) -> bytes:
    ranker = StreamRanker()
    ranker.learn([[1.0, 0.0, 0.0, 0.0, -1.0, 0.0]])
    data = orjson.loads(ranker.to_json())
    data.update(changes)
    return orjson.dumps({k: v for k, v in data.items() if v is not None})


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"null",
        b"[1, 2]",
        _state(model="river-fm-v0"),
        _state(features=[*FEATURES, "price"]),  # a state over features we do not have
        _state(features=list(reversed(FEATURES))),
        _state(n_pairs=None),  # a key missing
        _state(weights=[0.5, 0.5]),
        _state(intercept="high"),
        _state(optimizer={"name": "sgd", "n_iterations": 1, "g2": {}}),  # another learner's
        _state(optimizer={"name": "adagrad", "n_iterations": 1, "g2": [0.1]}),
    ],
    ids=[
        "not-json",
        "null",
        "a-list",
        "other-model",
        "more-features",
        "other-feature-order",
        "missing-key",
        "weights-not-a-map",
        "intercept-not-a-number",
        "other-optimizer",
        "optimizer-state-not-a-map",
    ],
)
def test_a_foreign_or_damaged_ranker_state_is_refused(raw: bytes) -> None:
    assert StreamRanker.from_json(_state()).n_updates == 1  # the untouched state loads
    with pytest.raises(ValueError):
        StreamRanker.from_json(raw)


# ------------------------------------------------------------------------------ OnlineScorer


class _FakeSession:
    """A session model with the serving model's ``recommend`` signature."""

    version = "s-v1"

    def __init__(self) -> None:
        self.calls: list[tuple[list[list[str]], int, list[list[str]] | None]] = []

    def recommend(
        self,
        prefixes: Sequence[Sequence[str]],
        k: int,
        exclude: Sequence[Iterable[str]] | None = None,
    ) -> list[list[tuple[str, float]]]:
        self.calls.append(
            (
                [list(p) for p in prefixes],
                k,
                None if exclude is None else [list(e) for e in exclude],
            )
        )
        return [[("s1", 0.9), ("a", 0.8)] for _ in prefixes]


class _Slot:
    """A ``ModelSlot``'s reading side: ``current()`` and ``version``."""

    def __init__(self, model: _FakeSession) -> None:
        self.model = model

    @property
    def version(self) -> str:
        return self.model.version

    def current(self) -> _FakeSession:
        return self.model


def _ranker_version(counts: Mapping[int, int]) -> str:
    return f"{RANKER_NAME}@" + ",".join(f"p{p}:{n}" for p, n in sorted(counts.items()))


def test_online_scorer_blends_the_session_model_and_reports_every_version() -> None:
    cache = MemoryCache()
    cache.publish_neighbors({"a": [("x", 0.9)]}, {"a": 1.0, "x": 1.0})
    model = _FakeSession()
    scorer = OnlineScorer(cache, _Slot(model), session_slots=2)
    recs = scorer.recommend_batch({"u": ["a"]}, [("t", 2.0)], n=3)["u"]
    assert [(r.item_id, r.reason) for r in recs] == [
        ("x", "because you viewed a"),
        ("s1", SESSION_REASON),
        ("t", TRENDING_REASON),
    ]
    assert dict(scorer.versions) == {
        "cf": CF_VERSION,
        "ranker": _ranker_version({key_partition("u", 4): 0}),
        "session": "s-v1",
    }
    assert model.calls == [([["a"]], 2, [["a"]])]  # seen items excluded by the model too


def test_a_failing_session_model_leaves_the_cf_list() -> None:
    class Broken(_FakeSession):
        def recommend(
            self,
            prefixes: Sequence[Sequence[str]],
            k: int,
            exclude: Sequence[Iterable[str]] | None = None,
        ) -> list[list[tuple[str, float]]]:
            raise RuntimeError("boom")

    cache = MemoryCache()
    cache.publish_neighbors({"a": [("x", 0.9)]}, {"a": 1.0, "x": 1.0})
    scorer = OnlineScorer(cache, _Slot(Broken()))
    recs = scorer.recommend_batch({"u": ["a"]}, [("t", 2.0)], n=2)["u"]
    assert [r.item_id for r in recs] == ["x", "t"] and "session" not in scorer.versions


class _Feed:
    """One user's events through ``LivePath`` as the agent hands them over: histories before
    and after, each event's (partition, offset)."""

    def __init__(self, path: LivePath, partitions: int = 4) -> None:
        self.path = path
        self.partitions = partitions
        self.histories: dict[str, list[str]] = {}
        self.offsets: dict[int, int] = {}

    def send(self, user: str, item: str, ts: int) -> bool:
        """Process the event as a batch of its own; True if its recs were written."""
        part = key_partition(user, self.partitions)
        self.offsets[part] = offset = self.offsets.get(part, -1) + 1
        before = self.histories.get(user, [])
        self.histories[user] = after = merge_history(before, [item], 50)
        result = self.path.process(
            [Interaction(user, item, "view", ts)],
            {user: after},
            dlq=0,
            hwm=("events", [(part, offset)]),
            before={user: before},
        )
        return not result.degraded


def _worker(cache: MemoryCache, scorer: OnlineScorer) -> _Feed:
    return _Feed(LivePath(cache, scorer, top_n=5, half_life_s=3600, rec_ttl_s=60, history_len=50))


def _stored(cache: MemoryCache, partition: int) -> bytes:
    key = CacheKeys().ranker(partition)
    return cache.read_state([key])[key]


def _stored_updates(cache: MemoryCache, partition: int) -> int:
    return StreamRanker.from_json(_stored(cache, partition)).n_updates


def _with_lists(cache: MemoryCache) -> MemoryCache:
    """Every item of the tests' users has all the others as neighbours: each event's item is
    a candidate, so each event after a user's first teaches (candidate positives only)."""
    items = "abcdefgxy"
    cache.publish_neighbors(
        {item: [(other, 0.5) for other in items if other != item] for item in items},
        dict.fromkeys(items, 1.0),
    )
    return cache


def test_cached_lists_name_the_ranker_and_its_update_count() -> None:
    cache = _with_lists(MemoryCache())
    scorer = OnlineScorer(cache)
    feed = _worker(cache, scorer)
    part = key_partition("u", 4)
    for n, item in enumerate("abcd"):
        assert feed.send("u", item, T0 + n)
    recs = cache.get_recs("u")
    assert recs is not None
    # "a" was learned against an empty history (no candidate: nothing to learn); b, c, d were,
    # each a candidate (a neighbour of the items before it)
    assert recs.model_versions == {"cf": CF_VERSION, "ranker": _ranker_version({part: 3})}
    assert _stored_updates(cache, part) == 3  # checkpointed with the counted marks


def test_a_partition_continues_from_the_checkpoint_another_worker_wrote() -> None:
    cache = _with_lists(MemoryCache())
    ours, theirs = OnlineScorer(cache), OnlineScorer(cache)
    ours_feed, theirs_feed = _worker(cache, ours), _worker(cache, theirs)
    part = key_partition("u", 4)
    for n, item in enumerate("abc"):
        ours_feed.send("u", item, T0 + n)
    assert ours.model.rankers[part].n_updates == 2
    # a rebalance: the other worker takes the partition, picks up our checkpoint, learns on
    theirs_feed.histories, theirs_feed.offsets = ours_feed.histories, ours_feed.offsets
    for n, item in enumerate("def", 3):
        theirs_feed.send("u", item, T0 + n)
    assert theirs.model.rankers[part].n_updates == 5
    # and back: ours reloads their state instead of going on from its own older one
    ours.restore([part])
    assert ours.model.rankers[part].n_updates == 5
    assert ours.model.rankers[part].to_json() == _stored(cache, part)
    ours_feed.send("u", "g", T0 + 7)
    assert _stored_updates(cache, part) == 6


def test_a_failed_write_keeps_what_the_ranker_learned_in_memory(flaky_cache) -> None:
    cache = _with_lists(flaky_cache)
    scorer = OnlineScorer(cache)
    feed = _worker(cache, scorer)
    part = key_partition("u", 4)
    for n, item in enumerate("abc"):
        assert feed.send("u", item, T0 + n)
    assert _stored_updates(cache, part) == 2
    cache.fail_next = True
    assert not feed.send("u", "d", T0 + 3)  # learned, but neither recs nor state written
    assert _stored_updates(cache, part) == 2 and scorer.model.rankers[part].n_updates == 3
    # the stored state is older than ours, and ours was never written: keep learning from ours
    assert feed.send("u", "e", T0 + 4)
    assert scorer.model.rankers[part].n_updates == 4
    assert _stored_updates(cache, part) == 4


# ------------------------------------------------------------------------ one code path


class _ZeroLagItemSide(OnlineScorer):
    """The worker's scorer with an item side that has caught up when a batch is scored.

    After the rankers learned a batch (against the lists before it), the batch's deltas
    (the user side's ``batch_deltas``) are folded into ``rows`` and published as the item side
    does it (``_folded``, ``_publish_neighbors``): the item side ``StreamModel`` keeps in
    process. In the worker the lists lag by at least the item side's batch window.
    """

    def __init__(self, cache: MemoryCache, *, model: StreamScorer) -> None:
        super().__init__(cache, model=model, partitions=model.partitions)
        self.rows: dict[bytes, dict] = {}
        #: (partition, offset) of each event of the batch being processed
        self.positions: list[tuple[int, int]] = []

    def learn_batch(
        self,
        events: Sequence[Interaction],
        before: Mapping[str, Sequence[str]],
        partitions: Sequence[int],
    ) -> None:
        super().learn_batch(events, before, partitions)
        if not events:  # a negative event's batch: LivePath hands no event to learn
            return
        batch = SortedBatch(list(events), [], [e.timestamp_ms for e in events], self.positions)
        histories = {user: list(history) for user, history in before.items()}
        deltas = [(item.encode(), d) for (item, _), d in batch_deltas(batch, histories).items()]
        rows = _folded(deltas, {key: self.rows.get(key) for key, _ in deltas})
        self.rows.update(rows)
        _publish_neighbors(self.cache, rows)
        # The lists the batch read before it learned are stale now: its scoring reads anew,
        # as StreamModel ranks the next event with the lists its own event updated.
        self._batch_lists = None


def _negative_after(
    event: Interaction, served: Sequence[str], rng: random.Random
) -> Interaction | None:
    """Now and then, the user turns down an item of her served list right after ``event``: a
    dislike, a skip, or a rating (1 or 2 stars are negative below 3, 4 stars are not)."""
    if not served or rng.random() >= 0.15:
        return None
    item = served[rng.randrange(min(3, len(served)))]
    kind = rng.choice(["dislike", "skip", "rating"])
    value = rng.choice([1.0, 2.0, 4.0]) if kind == "rating" else None
    return Interaction(event.user_id, item, kind, event.timestamp_ms, value)


def test_the_worker_and_the_in_process_model_rank_and_learn_alike() -> None:
    """One event per batch through ``LivePath`` + ``OnlineScorer`` + the cache, side by side with
    ``StreamModel.learn_one``: the same lists, trending, partitions and seeds, so the same
    recommendations after every event and the same rankers at the end. Users now and then turn
    down an item they were served (dislikes, skips, low ratings with a threshold): both sides
    then leave it out of her lists for good and learn nothing from it. Both have the catalog,
    with items no event names (cold candidates and the content feature on both sides)."""
    parts, top_n, history_len, min_trained = 4, 10, 200, 50
    config = SyntheticConfig(n_users=40, n_items=60, n_clusters=4, n_events=2_000, seed=1)
    stream = deque(generate_synthetic(config).events)
    catalog = synthetic_catalog(config)
    catalog += [ItemRecord(f"new{k}", f"New {k}", (f"c{k % 4}",)) for k in range(8)]
    feedback = Feedback(negative_rating_below=3.0)
    cache = MemoryCache()
    content = ItemContent()
    for record in catalog:
        content.apply(record.item_id, record)
    model_side = StreamScorer(partitions=parts, min_trained=min_trained, content=content)
    scorer = _ZeroLagItemSide(cache, model=model_side)
    path = LivePath(
        cache,
        scorer,
        top_n=top_n,
        half_life_s=3600.0,
        rec_ttl_s=3600,
        history_len=history_len,
        feedback=feedback,
    )
    model = StreamModel(
        partitions=parts,
        history_len=history_len,
        popularity_half_life_s=3600.0,
        min_trained=min_trained,
        feedback=feedback,
        catalog=catalog,
    )
    histories: dict[str, list[str]] = {}
    excluded: dict[str, list[str]] = {}
    acts: dict[str, dict[str, str]] = {}
    offsets: dict[int, int] = {}
    rng = random.Random(5)
    trained = negatives = cold_served = 0
    while stream:
        event = stream.popleft()
        user = event.user_id
        part = key_partition(user, parts)
        offsets[part] = offsets.get(part, -1) + 1
        before = histories.get(user, [])
        if feedback.is_negative(event):
            negatives += 1
            excluded[user] = merge_history(excluded.get(user, []), [event.item_id], history_len)
        else:
            histories[user] = merge_history(before, [event.item_id], history_len)
            act = (event.item_id, act_of(event.event_type, event.value))
            acts[user] = merge_acts(acts.get(user, {}), [act], histories[user])
        scorer.positions = [(part, offsets[part])]
        path.process(
            [event],
            {user: histories.get(user, [])},
            dlq=0,
            hwm=("events", scorer.positions),
            before={user: before},
            excluded={user: excluded[user]} if user in excluded else None,
            acts={user: acts[user]} if acts.get(user) else None,
        )
        model.learn_one(event)
        cached = cache.get_recs(user)
        assert cached is not None
        served = [r.item_id for r in cached.items]
        assert not set(served) & set(excluded.get(user, ()))
        turned_down = _negative_after(event, served, rng)
        if turned_down is not None:
            stream.appendleft(turned_down)
        expected = model.recommend(user, top_n, event.timestamp_ms)
        assert [(r.item_id, r.reason) for r in cached.items] == [
            (r.item_id, r.reason) for r in expected
        ]
        assert [r.score for r in cached.items] == pytest.approx(
            [r.score for r in expected],
            abs=1e-6,  # cached scores are rounded to 6 decimals
        )
        trained += model.scorer.ranker(part).n_updates >= min_trained
        cold_served += any(r.item_id.startswith("new") for r in cached.items)
    assert cold_served > 100  # the cold items took part on both sides
    assert trained > 1_000  # most lists were ranked by learned weights, not the fixed blend
    assert negatives > 150 and model.excluded == excluded
    ours, theirs = scorer.model.rankers, model.scorer.rankers
    assert sorted(ours) == sorted(theirs) == list(range(parts))
    for p in range(parts):
        assert ours[p].n_updates == theirs[p].n_updates >= min_trained
        assert ours[p].n_events == theirs[p].n_events
        assert ours[p].n_pairs == theirs[p].n_pairs
        assert ours[p].weights().tolist() != list(FIXED_BLEND)
        # The worker learns with the trending list of the batch before, decayed to that batch's
        # time; StreamModel decays the same counts to the event's time. ``popularity_values``
        # divides by the mean, so the feature is the same up to float rounding.
        np.testing.assert_allclose(ours[p].weights(), theirs[p].weights(), rtol=1e-9)
