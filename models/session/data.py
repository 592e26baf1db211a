"""Sessions, vocabulary and splits: the data side of the session model, free of TensorFlow.

The rules live here once because the trainer, the evaluator and the benchmarks all use them:
sessions are cut by ``session_id`` (trusted over the clock) or else by a ``gap_s`` inactivity
gap; the vocabulary has padding at 0, the OOV bucket at 1, then items by training support (rarer
than ``min_support``: OOV, a miss for every model); the session protocol splits by time at
event-time quantiles, a session going to the part of its last event; leave-one-out holds out
each user's last two events (validation, test). The rules in full: docs/session-model.md,
"Protocols".
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.events import Interaction

PAD_INDEX = 0
OOV_INDEX = 1
FIRST_ITEM_INDEX = 2
DEFAULT_GAP_S = 1800.0


@dataclass(frozen=True, slots=True)
class Session:
    """One user's consecutive events, as item ids with their timestamps (epoch ms)."""

    user_id: str
    session_id: str
    items: tuple[str, ...]
    timestamps_ms: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.items)

    @property
    def start_ms(self) -> int:
        return self.timestamps_ms[0]

    @property
    def end_ms(self) -> int:
        return self.timestamps_ms[-1]


def _is_boundary(prev: Interaction, event: Interaction, gap_ms: float, use_ids: bool) -> bool:
    if use_ids and prev.session_id is not None and event.session_id is not None:
        return prev.session_id != event.session_id
    return event.timestamp_ms - prev.timestamp_ms > gap_ms


def _make_session(user_id: str, chunk: list[Interaction], n: int, use_ids: bool) -> Session:
    given = chunk[0].session_id if use_ids else None
    return Session(
        user_id=user_id,
        session_id=given if given is not None else f"{user_id}#{n}",
        items=tuple(e.item_id for e in chunk),
        timestamps_ms=tuple(e.timestamp_ms for e in chunk),
    )


def sessionize(
    events: Iterable[Interaction], gap_s: float = DEFAULT_GAP_S, use_session_id: bool = True
) -> list[Session]:
    """Cut each user's events into sessions (rules in the module docstring).

    Events are taken in the order given (stream order); the result is sorted by session start,
    then user.

    >>> ev = [Interaction("u", i, "view", t * 60_000) for i, t in
    ...       [("a", 0), ("b", 1), ("c", 40), ("d", 41)]]
    >>> [s.items for s in sessionize(ev, gap_s=1800)]
    [('a', 'b'), ('c', 'd')]
    """
    if gap_s <= 0:
        raise ValueError("gap_s must be positive")
    by_user: dict[str, list[Interaction]] = defaultdict(list)
    for event in events:
        by_user[event.user_id].append(event)
    gap_ms = gap_s * 1000.0
    sessions: list[Session] = []
    for user_id, user_events in by_user.items():
        current: list[Interaction] = [user_events[0]]
        ordinal = 0
        for event in user_events[1:]:
            if _is_boundary(current[-1], event, gap_ms, use_session_id):
                sessions.append(_make_session(user_id, current, ordinal, use_session_id))
                ordinal += 1
                current = []
            current.append(event)
        sessions.append(_make_session(user_id, current, ordinal, use_session_id))
    sessions.sort(key=lambda s: (s.start_ms, s.user_id, s.session_id))
    return sessions


def user_sequences(events: Iterable[Interaction]) -> list[Session]:
    """Each user's whole history as one sequence (the leave-one-out protocol's unit)."""
    by_user: dict[str, list[Interaction]] = defaultdict(list)
    for event in events:
        by_user[event.user_id].append(event)
    out = [
        Session(
            user_id=user,
            session_id=user,
            items=tuple(e.item_id for e in evs),
            timestamps_ms=tuple(e.timestamp_ms for e in evs),
        )
        for user, evs in by_user.items()
    ]
    out.sort(key=lambda s: (s.start_ms, s.user_id))
    return out


@dataclass(slots=True)
class Vocabulary:
    """Item id <-> index, with padding (0) and an OOV bucket (1).

    >>> vocab = Vocabulary.build([("a", "b", "a"), ("c",)], min_support=2)
    >>> vocab.items, vocab.size, vocab.encode(["a", "b", "zzz"]).tolist()
    (['a'], 3, [2, 1, 1])
    """

    items: list[str]
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if len(set(self.items)) != len(self.items):
            raise ValueError("vocabulary items must be unique")
        self._index = {item: n + FIRST_ITEM_INDEX for n, item in enumerate(self.items)}

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]], min_support: int = 1) -> Vocabulary:
        counts: Counter[str] = Counter()
        for seq in sequences:
            counts.update(seq)
        kept = [(item, n) for item, n in counts.items() if n >= min_support]
        kept.sort(key=lambda pair: (-pair[1], pair[0]))
        return cls([item for item, _ in kept])

    @property
    def size(self) -> int:
        """Number of indices including padding and OOV (the embedding table's row count)."""
        return len(self.items) + FIRST_ITEM_INDEX

    def index(self, item: str) -> int:
        return self._index.get(item, OOV_INDEX)

    def __contains__(self, item: object) -> bool:
        return item in self._index

    def encode(self, items: Iterable[str]) -> np.ndarray:
        return np.fromiter((self._index.get(i, OOV_INDEX) for i in items), dtype=np.int32)

    def item(self, index: int) -> str:
        if index < FIRST_ITEM_INDEX:
            raise KeyError(f"index {index} is padding or OOV, not an item")
        return self.items[index - FIRST_ITEM_INDEX]

    def to_json_dict(self) -> dict[str, object]:
        return {"pad_index": PAD_INDEX, "oov_index": OOV_INDEX, "items": list(self.items)}

    @classmethod
    def from_json_dict(cls, payload: object) -> Vocabulary:
        if not isinstance(payload, dict):
            raise ValueError("vocabulary must be a JSON object")
        if payload.get("pad_index") != PAD_INDEX or payload.get("oov_index") != OOV_INDEX:
            raise ValueError("vocabulary pad/oov indices differ from this code's (0/1)")
        items = payload.get("items")
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ValueError("vocabulary 'items' must be a list of strings")
        return cls(list(items))


@dataclass(frozen=True, slots=True)
class EvalCase:
    """One next-item prediction: rank ``target`` given ``prefix``, never ranking ``exclude``."""

    prefix: tuple[str, ...]
    target: str
    exclude: tuple[str, ...] = ()


@dataclass(slots=True)
class Split:
    """Training sequences plus validation and test cases, from either protocol."""

    protocol: str
    train: list[Session]
    validation: list[EvalCase]
    test: list[EvalCase]
    info: dict[str, object] = field(default_factory=dict)


def next_item_cases(sessions: Iterable[Session]) -> list[EvalCase]:
    """Every position of every session: prefix ``items[:k]`` predicts ``items[k]``.

    >>> s = Session("u", "s", ("a", "b", "c"), (1, 2, 3))
    >>> [(c.prefix, c.target) for c in next_item_cases([s])]
    [(('a',), 'b'), (('a', 'b'), 'c')]
    """
    return [
        EvalCase(prefix=s.items[:k], target=s.items[k])
        for s in sessions
        for k in range(1, len(s.items))
    ]


def time_split(
    sessions: Sequence[Session], val_fraction: float = 0.1, test_fraction: float = 0.1
) -> tuple[list[Session], list[Session], list[Session], int, int]:
    """Split sessions by the time of their last event: (train, validation, test, t_val, t_test).

    >>> ss = [Session("u", str(t), ("a", "b"), (t, t + 1)) for t in range(0, 100, 10)]
    >>> train, val, test, t_val, t_test = time_split(ss, 0.2, 0.2)
    >>> [len(train), len(val), len(test)], t_val, t_test
    ([6, 2, 2], 60, 80)
    """
    if not 0 <= val_fraction < 1 or not 0 < test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError("fractions must satisfy 0 <= val, 0 < test, val + test < 1")
    stamps = np.sort(np.fromiter((t for s in sessions for t in s.timestamps_ms), dtype=np.int64))
    if stamps.size == 0:
        raise ValueError("no events to split")

    def cut(fraction: float) -> int:
        return int(stamps[min(int(np.floor(fraction * stamps.size)), stamps.size - 1)])

    t_val = cut(1.0 - val_fraction - test_fraction)
    t_test = cut(1.0 - test_fraction)
    train = [s for s in sessions if s.end_ms < t_val]
    val = [s for s in sessions if t_val <= s.end_ms < t_test]
    test = [s for s in sessions if s.end_ms >= t_test]
    return train, val, test, t_val, t_test


def session_protocol(
    events: Sequence[Interaction],
    gap_s: float = DEFAULT_GAP_S,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    use_session_id: bool = True,
) -> Split:
    """Sessions by gap (or id), time split, length-1 sessions dropped, every position a case."""
    sessions = sessionize(events, gap_s=gap_s, use_session_id=use_session_id)
    usable = [s for s in sessions if len(s) >= 2]
    train, val, test, t_val, t_test = time_split(usable, val_fraction, test_fraction)
    return Split(
        protocol="session",
        train=train,
        validation=next_item_cases(val),
        test=next_item_cases(test),
        info={
            "sessions": len(sessions),
            "sessions_len_ge_2": len(usable),
            "train_sessions": len(train),
            "validation_sessions": len(val),
            "test_sessions": len(test),
            "t_val_ms": t_val,
            "t_test_ms": t_test,
            "gap_s": gap_s,
        },
    )


def leave_one_out(events: Sequence[Interaction], min_history: int = 3) -> Split:
    """Last event of each user = test target, the one before = validation, the rest = training.

    Users with fewer than ``min_history`` events contribute training data only.

    >>> ev = [Interaction("u", i, "rating", t, 4.0) for t, i in enumerate("abcd")]
    >>> split = leave_one_out(ev)
    >>> split.train[0].items, split.validation[0], split.test[0].target
    (('a', 'b'), EvalCase(prefix=('a', 'b'), target='c', exclude=('a', 'b')), 'd')
    """
    train: list[Session] = []
    val: list[EvalCase] = []
    test: list[EvalCase] = []
    for seq in user_sequences(events):
        if len(seq) < min_history:
            train.append(seq)
            continue
        head = seq.items[:-2]
        train.append(Session(seq.user_id, seq.session_id, head, seq.timestamps_ms[:-2]))
        val.append(EvalCase(prefix=head, target=seq.items[-2], exclude=head))
        before_test = seq.items[:-1]
        test.append(EvalCase(prefix=before_test, target=seq.items[-1], exclude=before_test))
    return Split(
        protocol="leave-one-out",
        train=train,
        validation=val,
        test=test,
        info={"users": len(train), "evaluated_users": len(test)},
    )


def training_windows(
    sequences: Iterable[np.ndarray], max_len: int, stride: int | None = None
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Cut encoded sequences into (inputs, targets, loss mask) windows of at most ``max_len``.

    A sequence of n items gives n-1 next-item targets. Short ones are one window. Longer ones
    are covered by overlapping windows ending every ``stride`` targets (default ``max_len // 2``):
    each target is trained exactly once, in the window where it has the most context, so a cut
    never leaves a target with an empty history (the padded-sequence mistake of training the
    first item of every chunk "from scratch"). OOV targets are masked out of the loss.

    >>> x, y, m = training_windows([np.array([2, 3, 4, 5, 6])], max_len=2, stride=1)
    >>> [w.tolist() for w in x], [w.tolist() for w in y], [w.tolist() for w in m]
    ([[2, 3], [3, 4], [4, 5]], [[3, 4], [4, 5], [5, 6]], [[1.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    """
    if max_len < 1:
        raise ValueError("max_len must be >= 1")
    step = stride if stride is not None else max(1, max_len // 2)
    if not 1 <= step <= max_len:
        raise ValueError("stride must be in 1..max_len")
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    ms: list[np.ndarray] = []
    for seq in sequences:
        n_targets = len(seq) - 1
        if n_targets < 1:
            continue
        inputs, targets = seq[:-1], seq[1:]
        ends = [min(max_len, n_targets)]
        while ends[-1] < n_targets:
            ends.append(min(ends[-1] + step, n_targets))
        prev_end = 0
        for end in ends:
            start = max(0, end - max_len)
            mask = np.zeros(end - start, dtype=np.float32)
            mask[prev_end - start :] = 1.0
            mask[targets[start:end] < FIRST_ITEM_INDEX] = 0.0
            if mask.any():
                xs.append(inputs[start:end])
                ys.append(targets[start:end])
                ms.append(mask)
            prev_end = end
    return xs, ys, ms


def left_pad(rows: Sequence[np.ndarray], length: int | None = None, dtype=np.int32) -> np.ndarray:
    """Stack rows into a matrix, padded with zeros on the left (the last column is "now").

    >>> left_pad([np.array([1, 2]), np.array([3])]).tolist()
    [[1, 2], [0, 3]]
    """
    width = length if length is not None else max((len(r) for r in rows), default=0)
    out = np.zeros((len(rows), max(width, 1)), dtype=dtype)
    for n, row in enumerate(rows):
        tail = row[-width:] if width else row[:0]
        if len(tail):
            out[n, -len(tail) :] = tail
    return out


def recent_window(
    events: Sequence[Interaction], seconds: float = 0.0, max_events: int = 0
) -> list[Interaction]:
    """The trainer's sliding window over events in stream order: those within ``seconds`` of
    stream time before the newest event (0: no limit), then at most the newest ``max_events``
    (0: no limit). Stream time, not the clock: a replayed or delayed stream keeps its window.

    >>> ev = [Interaction("u", str(t), "view", t * 1000) for t in range(10)]
    >>> [e.item_id for e in recent_window(ev, seconds=3)]
    ['6', '7', '8', '9']
    >>> [e.item_id for e in recent_window(ev, seconds=3, max_events=2)]
    ['8', '9']
    """
    kept = list(events)
    if seconds > 0 and kept:
        since = max(e.timestamp_ms for e in kept) - seconds * 1000.0
        kept = [e for e in kept if e.timestamp_ms >= since]
    if max_events > 0:
        kept = kept[-max_events:]
    return kept
