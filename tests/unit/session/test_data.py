"""Sessionization, vocabulary, splits and training windows on hand-made examples."""

from __future__ import annotations

import numpy as np
import pytest

from models.events import Interaction
from models.session.data import (
    OOV_INDEX,
    EvalCase,
    Session,
    Vocabulary,
    leave_one_out,
    left_pad,
    next_item_cases,
    session_protocol,
    sessionize,
    time_split,
    training_windows,
)

MIN = 60_000
T0 = 1_700_000_000_000


def ev(user: str, item: str, minute: float, session_id: str | None = None) -> Interaction:
    return Interaction(user, item, "view", T0 + int(minute * MIN), session_id=session_id)


def test_gap_splits_sessions_and_exact_gap_stays_together() -> None:
    events = [ev("u", "a", 0), ev("u", "b", 30), ev("u", "c", 60.01), ev("u", "d", 61)]
    sessions = sessionize(events, gap_s=1800)
    assert [s.items for s in sessions] == [("a", "b"), ("c", "d")]
    assert [s.session_id for s in sessions] == ["u#0", "u#1"]


def test_users_are_sessionized_independently_and_sorted_by_start() -> None:
    events = [ev("u", "a", 0), ev("v", "x", 1), ev("u", "b", 2), ev("v", "y", 100)]
    sessions = sessionize(events, gap_s=1800)
    assert [(s.user_id, s.items) for s in sessions] == [
        ("u", ("a", "b")),
        ("v", ("x",)),
        ("v", ("y",)),
    ]


def test_session_id_wins_over_the_clock() -> None:
    events = [
        ev("u", "a", 0, "s1"),
        ev("u", "b", 500, "s1"),  # long pause, same id: one session
        ev("u", "c", 501, "s2"),  # short pause, new id: new session
    ]
    sessions = sessionize(events, gap_s=1800)
    assert [(s.session_id, s.items) for s in sessions] == [("s1", ("a", "b")), ("s2", ("c",))]
    by_gap = sessionize(events, gap_s=1800, use_session_id=False)
    assert [s.items for s in by_gap] == [("a",), ("b", "c")]


def test_missing_session_id_falls_back_to_the_gap() -> None:
    events = [ev("u", "a", 0, "s1"), ev("u", "b", 10), ev("u", "c", 100)]
    assert [s.items for s in sessionize(events, gap_s=1800)] == [("a", "b"), ("c",)]


def test_sessionize_rejects_a_non_positive_gap() -> None:
    with pytest.raises(ValueError, match="gap_s"):
        sessionize([ev("u", "a", 0)], gap_s=0)


def test_vocabulary_min_support_oov_and_order() -> None:
    vocab = Vocabulary.build([("b", "a", "b"), ("a", "c", "b")], min_support=2)
    assert vocab.items == ["b", "a"]  # by support, then id
    assert vocab.size == 4
    assert vocab.encode(["a", "c", "b"]).tolist() == [3, OOV_INDEX, 2]
    assert "a" in vocab and "c" not in vocab
    assert vocab.item(2) == "b"
    with pytest.raises(KeyError):
        vocab.item(OOV_INDEX)
    again = Vocabulary.from_json_dict(vocab.to_json_dict())
    assert again.items == vocab.items


def test_vocabulary_json_is_checked() -> None:
    with pytest.raises(ValueError, match="pad/oov"):
        Vocabulary.from_json_dict({"pad_index": 1, "oov_index": 0, "items": []})
    with pytest.raises(ValueError, match="list of strings"):
        Vocabulary.from_json_dict({"pad_index": 0, "oov_index": 1, "items": [1]})
    with pytest.raises(ValueError, match="unique"):
        Vocabulary(["a", "a"])


def test_time_split_assigns_by_last_event_and_never_shuffles() -> None:
    sessions = [
        Session("u1", "early", ("a", "b"), (0, 10)),
        Session("u2", "late-start", ("c", "d"), (5, 95)),  # starts early, ends late: test
        Session("u3", "mid", ("e", "f"), (60, 70)),
        Session("u4", "end", ("g", "h"), (90, 99)),
    ]
    train, val, test, t_val, t_test = time_split(sessions, val_fraction=0.25, test_fraction=0.25)
    assert (t_val, t_test) == (70, 95)  # event-time quantiles over all 8 timestamps
    assert [s.session_id for s in train] == ["early"]
    assert [s.session_id for s in val] == ["mid"]
    assert [s.session_id for s in test] == ["late-start", "end"]
    assert max(s.end_ms for s in train) < t_val


@pytest.mark.parametrize(("val", "test"), [(0.5, 0.5), (0.1, 0.0), (-0.1, 0.2)])
def test_time_split_rejects_bad_fractions(val: float, test: float) -> None:
    with pytest.raises(ValueError):
        time_split([Session("u", "s", ("a", "b"), (0, 1))], val, test)


def test_session_protocol_drops_singletons_and_cases_cover_every_position() -> None:
    events = []
    for n in range(10):  # one 3-item session every 2 hours, plus a singleton in between
        events += [ev("u", "a", n * 240), ev("u", "b", n * 240 + 1), ev("u", "c", n * 240 + 2)]
        events.append(ev("u", "z", n * 240 + 120))
    split = session_protocol(events, gap_s=1800, val_fraction=0.2, test_fraction=0.2)
    assert split.info["sessions"] == 20 and split.info["sessions_len_ge_2"] == 10
    assert all(len(s) == 3 for s in split.train)
    assert len(split.train) + (len(split.validation) + len(split.test)) // 2 == 10
    assert split.test[:2] == [EvalCase(("a",), "b"), EvalCase(("a", "b"), "c")]


def test_next_item_cases_skips_single_item_sessions() -> None:
    assert next_item_cases([Session("u", "s", ("a",), (1,))]) == []


def test_leave_one_out_targets_and_exclusions() -> None:
    events = [ev("u", i, n) for n, i in enumerate("abcde")] + [ev("v", "a", 0), ev("v", "b", 1)]
    split = leave_one_out(events)
    by_user = {s.user_id: s.items for s in split.train}
    assert by_user == {"u": ("a", "b", "c"), "v": ("a", "b")}  # v is too short to evaluate
    assert split.validation == [EvalCase(("a", "b", "c"), "d", ("a", "b", "c"))]
    assert split.test == [EvalCase(("a", "b", "c", "d"), "e", ("a", "b", "c", "d"))]


def test_training_windows_train_each_target_once_with_history() -> None:
    seq = np.arange(2, 2 + 12, dtype=np.int32)  # 12 items, 11 targets
    xs, ys, ms = training_windows([seq], max_len=4, stride=2)
    trained = [int(y) for x, y_row, m in zip(xs, ys, ms, strict=True) for y in y_row[m > 0]]
    assert sorted(trained) == seq[1:].tolist()
    assert int(np.argmax(ms[0] > 0)) == 0  # the first window trains from its first item
    for x, y_row, m in zip(xs[1:], ys[1:], ms[1:], strict=True):
        assert len(x) == 4 and (y_row == x + 1).all()
        assert int(np.argmax(m > 0)) >= 2  # later windows: >= max_len - stride items of history


def test_training_windows_mask_oov_targets_and_skip_short_sequences() -> None:
    xs, ys, ms = training_windows(
        [np.array([2, OOV_INDEX, 3], dtype=np.int32), np.array([5], dtype=np.int32)], max_len=10
    )
    assert len(xs) == 1
    assert ys[0].tolist() == [OOV_INDEX, 3] and ms[0].tolist() == [0.0, 1.0]


def test_left_pad_truncates_to_the_most_recent_items() -> None:
    rows = [np.array([1, 2, 3]), np.array([4])]
    assert left_pad(rows, length=2).tolist() == [[2, 3], [0, 4]]
    assert left_pad([np.array([], dtype=np.int32)]).tolist() == [[0]]


def test_tie_order_file_keeps_the_source_order_of_same_timestamp_events() -> None:
    from models.datasets.base import EventDataset

    same = [ev("u", "z", 0), ev("u", "a", 0), ev("u", "m", 0), ev("u", "b", 1)]
    by_id = EventDataset("d", list(same)).sort()
    by_file = EventDataset("d", list(same)).sort("file")
    assert [e.item_id for e in by_id.events] == ["a", "m", "z", "b"]
    assert [e.item_id for e in by_file.events] == ["z", "a", "m", "b"]
    assert leave_one_out(by_file.events).test[0].prefix == ("z", "a", "m")
    with pytest.raises(ValueError, match="tie_order"):
        EventDataset("d", list(same)).sort("random")
